//! The dialect's JSON shapes of results and events.

use super::error::{ErrorData, WsError};
use super::json::{write_array, write_str, Obj};
use super::symbols::{SymbolFilter, SymbolInfo};
use super::types::{
    AccountStatus, AmendOutcome, BookTicker, CancelReplaceOutcome, CancelResult, CommissionRates,
    DepthInfo, ExecutionReport, ListStatus, NewOrderOutcome, OrderInfo, OrderListInfo,
    OrderListResult, OrderResult, OrderStrategy, PositionInfo, PriceTicker, RespType, TradeInfo,
};

/// `{"code":…,"msg":…[,"data":…]}`.
pub(crate) fn error(out: &mut String, e: &WsError) {
    let mut o = Obj::open(out);
    o.int("code", e.code()).str("msg", e.msg());
    match e.data() {
        None => {}
        Some(ErrorData::RetryAfter {
            server_time,
            retry_after,
        }) => {
            o.with("data", |out| {
                Obj::open(out)
                    .int("serverTime", server_time)
                    .int("retryAfter", retry_after)
                    .close()
            });
        }
        Some(ErrorData::Json(json)) => {
            o.raw("data", json);
        }
    }
    o.close();
}

/// The dialect's conditional strategy fields, under `id_key` and `kind_key`.
fn strategy(o: &mut Obj<'_>, s: &OrderStrategy, id_key: &str, kind_key: &str) {
    if let Some(id) = s.id {
        // ≤ i64::MAX, as read.
        o.int(id_key, id as i64);
    }
    if let Some(kind) = s.kind {
        o.int(kind_key, i64::from(kind));
    }
}

/// The answer to `order.place` in the shape `resp` asks for.
pub(crate) fn order_result(out: &mut String, r: &OrderResult, resp: RespType) {
    let mut o = Obj::open(out);
    o.str("symbol", &r.symbol)
        .int("orderId", r.order_id)
        .int("orderListId", r.order_list_id)
        .str("clientOrderId", &r.client_order_id)
        .int("transactTime", r.transact_time);
    if resp != RespType::Ack {
        o.str("price", &r.price)
            .str("origQty", &r.orig_qty)
            .str("executedQty", &r.executed_qty)
            .str("origQuoteOrderQty", &r.orig_quote_order_qty)
            .str("cummulativeQuoteQty", &r.cummulative_quote_qty)
            .str("status", r.status.as_str())
            .str("timeInForce", r.time_in_force.as_str())
            .str("type", r.order_type.as_str())
            .str("side", r.side.as_str());
        if let Some(p) = &r.stop_price {
            o.str("stopPrice", p);
        }
        if let Some(d) = r.trailing_delta {
            o.int("trailingDelta", i64::from(d));
        }
        if let Some(t) = r.good_till_date {
            o.int("goodTillDate", t);
        }
        strategy(&mut o, &r.strategy, "strategyId", "strategyType");
        o.int("workingTime", r.working_time);
        if resp == RespType::Full {
            o.with("fills", |out| {
                write_array(out, &r.fills, |out, f| {
                    Obj::open(out)
                        .str("price", &f.price)
                        .str("qty", &f.qty)
                        .str("commission", &f.commission)
                        .str("commissionAsset", &f.commission_asset)
                        .int("tradeId", f.trade_id)
                        .close()
                })
            });
        }
        o.str("selfTradePreventionMode", r.stp.as_str());
    }
    o.close();
}

/// The answer to `orderList.place.*`: the list, then each order as `order.place` answers
/// it in the shape `resp` asks for.
pub(crate) fn order_list_result(out: &mut String, r: &OrderListResult, resp: RespType) {
    Obj::open(out)
        .int("orderListId", r.order_list_id)
        .str("contingencyType", r.contingency.as_str())
        .str("listStatusType", "EXEC_STARTED")
        .str("listOrderStatus", "EXECUTING")
        .str("listClientOrderId", &r.list_client_order_id)
        .int("transactionTime", r.transaction_time)
        .str("symbol", &r.symbol)
        .with("orders", |out| {
            write_array(out, &r.reports, |out, o| {
                Obj::open(out)
                    .str("symbol", &o.symbol)
                    .int("orderId", o.order_id)
                    .str("clientOrderId", &o.client_order_id)
                    .close()
            })
        })
        .with("orderReports", |out| {
            write_array(out, &r.reports, |out, o| order_result(out, o, resp))
        })
        .close();
}

/// An order list's state; `orderList.cancel`'s answer adds its `orderReports`.
pub(crate) fn order_list_info(out: &mut String, r: &OrderListInfo) {
    let (l, big_l) = if r.all_done {
        ("ALL_DONE", "ALL_DONE")
    } else {
        ("EXEC_STARTED", "EXECUTING")
    };
    let mut o = Obj::open(out);
    o.int("orderListId", r.order_list_id)
        .str("contingencyType", r.contingency.as_str())
        .str("listStatusType", l)
        .str("listOrderStatus", big_l)
        .str("listClientOrderId", &r.list_client_order_id)
        .int("transactionTime", r.transaction_time)
        .str("symbol", &r.symbol)
        .with("orders", |out| {
            write_array(out, &r.orders, |out, (id, cl)| {
                Obj::open(out)
                    .str("symbol", &r.symbol)
                    .int("orderId", *id)
                    .str("clientOrderId", cl)
                    .close()
            })
        });
    if !r.cancel_reports.is_empty() {
        o.with("orderReports", |out| {
            write_array(out, &r.cancel_reports, cancel_result)
        });
    }
    o.close();
}

/// `{"subscriptionId":N,"event":{"e":"listStatus",…}}`: an order list started or is all done.
pub(crate) fn list_status(out: &mut String, subscription: Option<u32>, r: &ListStatus) {
    event_head(out, subscription);
    let (l, big_l) = if r.all_done {
        ("ALL_DONE", "ALL_DONE")
    } else {
        ("EXEC_STARTED", "EXECUTING")
    };
    Obj::open(out)
        .str("e", "listStatus")
        .int("E", r.event_time)
        .str("s", &r.symbol)
        .int("g", r.order_list_id)
        .str("c", r.contingency.as_str())
        .str("l", l)
        .str("L", big_l)
        .str("r", "NONE")
        .str("C", &r.list_client_order_id)
        .int("T", r.transaction_time)
        .with("O", |out| {
            write_array(out, &r.orders, |out, (id, cl)| {
                Obj::open(out)
                    .str("s", &r.symbol)
                    .int("i", *id)
                    .str("c", cl)
                    .close()
            })
        })
        .close();
    out.push('}');
}

/// An order's state (`order.status`, `openOrders.status`).
pub(crate) fn order_info(out: &mut String, r: &OrderInfo) {
    let mut o = Obj::open(out);
    o.str("symbol", &r.symbol)
        .int("orderId", r.order_id)
        .int("orderListId", r.order_list_id)
        .str("clientOrderId", &r.client_order_id)
        .str("price", &r.price)
        .str("origQty", &r.orig_qty)
        .str("executedQty", &r.executed_qty)
        .str("cummulativeQuoteQty", &r.cummulative_quote_qty)
        .str("status", r.status.as_str())
        .str("timeInForce", r.time_in_force.as_str())
        .str("type", r.order_type.as_str())
        .str("side", r.side.as_str())
        .str("stopPrice", &r.stop_price)
        .str("icebergQty", &r.iceberg_qty);
    if let Some(d) = r.trailing_delta {
        o.int("trailingDelta", i64::from(d));
    }
    if let Some(t) = r.good_till_date {
        o.int("goodTillDate", t);
    }
    strategy(&mut o, &r.strategy, "strategyId", "strategyType");
    o.int("time", r.time)
        .int("updateTime", r.update_time)
        .bool("isWorking", r.is_working)
        .int("workingTime", r.working_time)
        .str("origQuoteOrderQty", &r.orig_quote_order_qty)
        .str("selfTradePreventionMode", r.stp.as_str())
        .close();
}

/// The answer to `order.amend.keepPriority`.
pub(crate) fn amend(out: &mut String, a: &AmendOutcome) {
    let r = &a.order;
    Obj::open(out)
        .int("transactTime", a.transact_time)
        .int("executionId", a.execution_id)
        .with("amendedOrder", |out| {
            Obj::open(out)
                .str("symbol", &r.symbol)
                .int("orderId", r.order_id)
                .int("orderListId", r.order_list_id)
                .str("origClientOrderId", &a.orig_client_order_id)
                .str("clientOrderId", &r.client_order_id)
                .str("price", &r.price)
                .str("qty", &r.orig_qty)
                .str("executedQty", &r.executed_qty)
                .str("preventedQty", "0.00000000")
                .str("quoteOrderQty", &r.orig_quote_order_qty)
                .str("cumulativeQuoteQty", &r.cummulative_quote_qty)
                .str("status", r.status.as_str())
                .str("timeInForce", r.time_in_force.as_str())
                .str("type", r.order_type.as_str())
                .str("side", r.side.as_str())
                .int("workingTime", r.working_time)
                .str("selfTradePreventionMode", r.stp.as_str())
                .close();
        })
        .close();
}

/// One trade of the account (`myTrades`).
pub(crate) fn trade_info(out: &mut String, t: &TradeInfo) {
    Obj::open(out)
        .str("symbol", &t.symbol)
        .int("id", t.id)
        .int("orderId", t.order_id)
        .int("orderListId", -1)
        .str("price", &t.price)
        .str("qty", &t.qty)
        .str("quoteQty", &t.quote_qty)
        .str("commission", &t.commission)
        .str("commissionAsset", &t.commission_asset)
        .int("time", t.time)
        .bool("isBuyer", t.is_buyer)
        .bool("isMaker", t.is_maker)
        .bool("isBestMatch", true)
        .close();
}

/// A canceled order.
pub(crate) fn cancel_result(out: &mut String, r: &CancelResult) {
    Obj::open(out)
        .str("symbol", &r.symbol)
        .str("origClientOrderId", &r.orig_client_order_id)
        .int("orderId", r.order_id)
        .int("orderListId", -1)
        .str("clientOrderId", &r.client_order_id)
        .int("transactTime", r.transact_time)
        .str("price", &r.price)
        .str("origQty", &r.orig_qty)
        .str("executedQty", &r.executed_qty)
        .str("origQuoteOrderQty", &r.orig_quote_order_qty)
        .str("cummulativeQuoteQty", &r.cummulative_quote_qty)
        .str("status", r.status.as_str())
        .str("timeInForce", r.time_in_force.as_str())
        .str("type", r.order_type.as_str())
        .str("side", r.side.as_str())
        .str("selfTradePreventionMode", r.stp.as_str())
        .close();
}

/// The cancel-replace report: a 200 result, or the error's `data` with its 409 or 400.
pub(crate) fn cancel_replace(o: &CancelReplaceOutcome, resp: RespType) -> Result<String, WsError> {
    let mut body = String::with_capacity(512);
    let cancel_ok = o.cancel.is_ok();
    let (new_ok, new_label) = match &o.new_order {
        NewOrderOutcome::Success(_) => (true, "SUCCESS"),
        NewOrderOutcome::Failure(_) => (false, "FAILURE"),
        NewOrderOutcome::NotAttempted => (false, "NOT_ATTEMPTED"),
    };
    let mut obj = Obj::open(&mut body);
    obj.str(
        "cancelResult",
        if cancel_ok { "SUCCESS" } else { "FAILURE" },
    )
    .str("newOrderResult", new_label)
    .with("cancelResponse", |out| match &o.cancel {
        Ok(c) => cancel_result(out, c),
        Err(e) => error_core(out, e),
    })
    .with("newOrderResponse", |out| match &o.new_order {
        NewOrderOutcome::Success(r) => order_result(out, r, resp),
        NewOrderOutcome::Failure(e) => error_core(out, e),
        NewOrderOutcome::NotAttempted => out.push_str("null"),
    })
    .close();
    match (cancel_ok, new_ok) {
        (true, true) => Ok(body),
        (false, false) => Err(WsError::bad_request(
            super::error::codes::CANCEL_REPLACE_FAILED,
            "Order cancel-replace failed.",
        )
        .with_json_data(body)),
        _ => Err(WsError::new(
            409,
            super::error::codes::CANCEL_REPLACE_PARTIAL,
            "Order cancel-replace partially failed.",
        )
        .with_json_data(body)),
    }
}

/// `{"code","msg"}` without `data` (inside a cancel-replace report).
fn error_core(out: &mut String, e: &WsError) {
    Obj::open(out)
        .int("code", e.code())
        .str("msg", e.msg())
        .close();
}

/// The answer to `account.status`.
/// `account.commission`: the standard rates, no tax or special rates, no discount.
pub(crate) fn account_commission(out: &mut String, symbol: &str, r: &CommissionRates) {
    let zero = "0.00000000";
    let none = CommissionRates {
        maker: zero.into(),
        taker: zero.into(),
        buyer: zero.into(),
        seller: zero.into(),
    };
    let rates = |out: &mut String, r: &CommissionRates| {
        Obj::open(out)
            .str("maker", &r.maker)
            .str("taker", &r.taker)
            .str("buyer", &r.buyer)
            .str("seller", &r.seller)
            .close()
    };
    Obj::open(out)
        .str("symbol", symbol)
        .with("standardCommission", |out| rates(out, r))
        .with("specialCommission", |out| rates(out, &none))
        .with("taxCommission", |out| rates(out, &none))
        .with("discount", no_discount)
        .close();
}

/// `order.test` with `computeCommissionRates`: the order's maker and taker rates.
pub(crate) fn order_commission(out: &mut String, r: &CommissionRates) {
    let zero = "0.00000000";
    Obj::open(out)
        .with("standardCommissionForOrder", |out| {
            Obj::open(out)
                .str("maker", &r.maker)
                .str("taker", &r.taker)
                .close()
        })
        .with("specialCommissionForOrder", |out| {
            Obj::open(out).str("maker", zero).str("taker", zero).close()
        })
        .with("taxCommissionForOrder", |out| {
            Obj::open(out).str("maker", zero).str("taker", zero).close()
        })
        .with("discount", no_discount)
        .close();
}

/// No commission discount (the server has no discount asset).
fn no_discount(out: &mut String) {
    Obj::open(out)
        .bool("enabledForAccount", false)
        .bool("enabledForSymbol", false)
        .str("discountAsset", "")
        .str("discount", "0.00000000")
        .close()
}

/// `depth`: `lastUpdateId`, then `bids` and `asks` as `[price, quantity]` pairs.
pub(crate) fn depth(out: &mut String, d: &DepthInfo) {
    let levels = |out: &mut String, v: &[(String, String)]| {
        write_array(out, v, |out, (p, q)| {
            out.push('[');
            write_str(out, p);
            out.push(',');
            write_str(out, q);
            out.push(']');
        })
    };
    Obj::open(out)
        .int("lastUpdateId", d.last_update_id)
        .with("bids", |out| levels(out, &d.bids))
        .with("asks", |out| levels(out, &d.asks))
        .close();
}

/// `ticker.price`.
pub(crate) fn price_ticker(out: &mut String, t: &PriceTicker) {
    Obj::open(out)
        .str("symbol", &t.symbol)
        .str("price", &t.price)
        .close();
}

/// `ticker.book`.
pub(crate) fn book_ticker(out: &mut String, t: &BookTicker) {
    Obj::open(out)
        .str("symbol", &t.symbol)
        .str("bidPrice", &t.bid_price)
        .str("bidQty", &t.bid_qty)
        .str("askPrice", &t.ask_price)
        .str("askQty", &t.ask_qty)
        .close();
}

/// One entry of `account.position` (the futures dialect's one-way mode: `positionSide`
/// `BOTH`); what the server does not keep (entry price, margins) is left out.
pub(crate) fn position_info(out: &mut String, p: &PositionInfo) {
    let mut o = Obj::open(out);
    o.str("symbol", &p.symbol)
        .str("positionSide", "BOTH")
        .str("positionAmt", &p.position_amt)
        .str("entryPrice", &p.entry_price)
        .str("breakEvenPrice", &p.entry_price);
    if let Some(m) = &p.mark_price {
        o.str("markPrice", m);
    }
    if let Some(n) = &p.notional {
        o.str("notional", n);
    }
    o.close();
}

pub(crate) fn account(out: &mut String, a: &AccountStatus) {
    Obj::open(out)
        .int("makerCommission", a.maker_commission)
        .int("takerCommission", a.taker_commission)
        .int("buyerCommission", 0)
        .int("sellerCommission", 0)
        .bool("canTrade", a.can_trade)
        .bool("canWithdraw", false)
        .bool("canDeposit", false)
        .with("commissionRates", |out| {
            let r = &a.commission_rates;
            Obj::open(out)
                .str("maker", &r.maker)
                .str("taker", &r.taker)
                .str("buyer", &r.buyer)
                .str("seller", &r.seller)
                .close()
        })
        .bool("brokered", false)
        .bool(
            "requireSelfTradePrevention",
            a.require_self_trade_prevention,
        )
        .bool("preventSor", false)
        .int("updateTime", a.update_time)
        .str("accountType", "SPOT")
        .with("balances", |out| {
            write_array(out, &a.balances, |out, b| {
                Obj::open(out)
                    .str("asset", &b.asset)
                    .str("free", &b.free)
                    .str("locked", &b.locked)
                    .close()
            })
        })
        .raw("permissions", "[\"SPOT\"]")
        .int("uid", a.uid)
        .close();
}

/// `{"subscriptionId":N,"event":{"e":"executionReport",…}}` with the dialect's one-letter keys.
pub(crate) fn execution_report(out: &mut String, subscription: Option<u32>, r: &ExecutionReport) {
    event_head(out, subscription);
    let mut o = Obj::open(out);
    o.str("e", "executionReport")
        .int("E", r.event_time)
        .str("s", &r.symbol)
        .str("c", &r.client_order_id)
        .str("S", r.side.as_str())
        .str("o", r.order_type.as_str())
        .str("f", r.time_in_force.as_str())
        .str("q", &r.quantity)
        .str("p", &r.price)
        .str("P", &r.stop_price)
        .str("F", &r.iceberg_qty);
    if let Some(d) = r.trailing_delta {
        o.int("d", i64::from(d));
    }
    strategy(&mut o, &r.strategy, "j", "J");
    o.int("g", r.order_list_id)
        .str("C", &r.orig_client_order_id)
        .str("x", r.execution_type.as_str())
        .str("X", r.order_status.as_str())
        .str("r", &r.reject_reason)
        .int("i", r.order_id)
        .str("l", &r.last_qty)
        .str("z", &r.cum_qty)
        .str("L", &r.last_price)
        .str("n", &r.commission)
        .opt_str("N", r.commission_asset.as_deref())
        .int("T", r.transaction_time)
        .int("t", r.trade_id.map_or(-1, |t| t.get() as i64))
        .int("I", r.execution_id)
        .bool("w", r.is_working)
        .bool("m", r.is_maker)
        .bool("M", false)
        .int("O", r.creation_time)
        .str("Z", &r.cum_quote_qty)
        .str("Y", &r.last_quote_qty)
        .str("Q", &r.quote_order_qty);
    if let Some(w) = r.working_time {
        o.int("W", w);
    }
    o.str("V", r.stp.as_str()).close();
    out.push('}');
}

/// The start of an event frame: `{"subscriptionId":N,"event":` (without an id for events of
/// the connection, such as `serverShutdown`).
fn event_head(out: &mut String, subscription: Option<u32>) {
    match subscription {
        Some(id) => {
            use std::fmt::Write;
            // Writing to a String cannot fail.
            let _ = write!(out, "{{\"subscriptionId\":{id},\"event\":");
        }
        None => out.push_str("{\"event\":"),
    }
}

/// `{"subscriptionId":N,"event":{"e":NAME,"E":time}}` (`eventStreamTerminated`; without an id,
/// `serverShutdown`).
pub(crate) fn simple_event(out: &mut String, subscription: Option<u32>, name: &str, time_ms: i64) {
    event_head(out, subscription);
    Obj::open(out).str("e", name).int("E", time_ms).close();
    out.push('}');
}

/// One symbol of `exchangeInfo`.
pub(crate) fn symbol(out: &mut String, s: &SymbolInfo) {
    Obj::open(out)
        .str("symbol", &s.symbol)
        .str("status", s.status.as_str())
        .str("baseAsset", &s.base_asset)
        .int("baseAssetPrecision", s.base_asset_precision)
        .str("quoteAsset", &s.quote_asset)
        .int("quotePrecision", s.quote_precision)
        .int("quoteAssetPrecision", s.quote_precision)
        .int("baseCommissionPrecision", s.base_asset_precision)
        .int("quoteCommissionPrecision", s.quote_precision)
        .with("orderTypes", |out| {
            write_array(out, &s.order_types, |out, t| write_str(out, t.as_str()))
        })
        .bool("icebergAllowed", s.iceberg_allowed)
        .bool("ocoAllowed", s.oco_allowed)
        .bool("otoAllowed", s.oto_allowed)
        .bool(
            "quoteOrderQtyMarketAllowed",
            s.quote_order_qty_market_allowed,
        )
        .bool("allowTrailingStop", s.trailing_allowed)
        .bool("cancelReplaceAllowed", s.cancel_replace_allowed)
        .bool("allowAmend", s.amend_allowed)
        .bool("isSpotTradingAllowed", true)
        .bool("isMarginTradingAllowed", false)
        .with("filters", |out| write_array(out, &s.filters, filter))
        .raw("permissions", "[]")
        .raw("permissionSets", "[[\"SPOT\"]]")
        .str("defaultSelfTradePreventionMode", s.default_stp.as_str())
        .with("allowedSelfTradePreventionModes", |out| {
            write_array(out, &s.allowed_stp, |out, m| write_str(out, m.as_str()))
        })
        .close();
}

fn filter(out: &mut String, f: &SymbolFilter) {
    let mut o = Obj::open(out);
    o.str("filterType", f.filter_type());
    match f {
        SymbolFilter::Price {
            min_price,
            max_price,
            tick_size,
        } => {
            o.str("minPrice", &min_price.to_string())
                .str("maxPrice", &max_price.to_string())
                .str("tickSize", &tick_size.to_string());
        }
        SymbolFilter::LotSize {
            min_qty,
            max_qty,
            step_size,
        } => {
            o.str("minQty", &min_qty.to_string())
                .str("maxQty", &max_qty.to_string())
                .str("stepSize", &step_size.to_string());
        }
        SymbolFilter::PercentPrice {
            multiplier_up,
            multiplier_down,
            avg_price_mins,
        } => {
            o.str("multiplierUp", &multiplier_up.to_string())
                .str("multiplierDown", &multiplier_down.to_string())
                .int("avgPriceMins", avg_price_mins);
        }
        SymbolFilter::IcebergParts { limit } => {
            o.int("limit", i64::from(*limit));
        }
        SymbolFilter::TrailingDelta {
            min_above,
            max_above,
            min_below,
            max_below,
        } => {
            o.int("minTrailingAboveDelta", i64::from(*min_above))
                .int("maxTrailingAboveDelta", i64::from(*max_above))
                .int("minTrailingBelowDelta", i64::from(*min_below))
                .int("maxTrailingBelowDelta", i64::from(*max_below));
        }
        SymbolFilter::Notional {
            min_notional,
            apply_min_to_market,
            max_notional,
            apply_max_to_market,
            avg_price_mins,
        } => {
            o.str("minNotional", &min_notional.to_string())
                .bool("applyMinToMarket", *apply_min_to_market)
                .str("maxNotional", &max_notional.to_string())
                .bool("applyMaxToMarket", *apply_max_to_market)
                .int("avgPriceMins", avg_price_mins);
        }
        SymbolFilter::MaxNumOrders { max_num_orders } => {
            o.int("maxNumOrders", max_num_orders);
        }
    }
    o.close();
}
