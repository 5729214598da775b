//! Instruments as the dialect describes them (`exchangeInfo`), and the static filter checks
//! the session applies to every order before the application sees it.

use std::collections::HashMap;

use super::decimal::Decimal;
use super::error::WsError;
use super::types::{OrderType, StpMode, SymbolStatus};

/// A symbol filter of `exchangeInfo`. A zero bound disables that bound, as in the dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolFilter {
    /// `PRICE_FILTER`: price within [minPrice, maxPrice] and a multiple of tickSize.
    Price {
        /// Lowest price (0: none).
        min_price: Decimal,
        /// Highest price (0: none).
        max_price: Decimal,
        /// Price increment (0: none).
        tick_size: Decimal,
    },
    /// `LOT_SIZE`: quantity within [minQty, maxQty] and a multiple of stepSize.
    LotSize {
        /// Lowest quantity.
        min_qty: Decimal,
        /// Highest quantity (0: none).
        max_qty: Decimal,
        /// Quantity increment (0: none).
        step_size: Decimal,
    },
    /// `PERCENT_PRICE`: price within [multiplierDown, multiplierUp] × the average price of the
    /// last `avg_price_mins` minutes. Needs market data: checked by the application.
    PercentPrice {
        /// Upper multiplier.
        multiplier_up: Decimal,
        /// Lower multiplier.
        multiplier_down: Decimal,
        /// Minutes of the average.
        avg_price_mins: u32,
    },
    /// `NOTIONAL`: price × quantity within [minNotional, maxNotional]. The session checks
    /// priced orders; MARKET orders (average price) are the application's.
    Notional {
        /// Lowest notional.
        min_notional: Decimal,
        /// The minimum applies to MARKET orders.
        apply_min_to_market: bool,
        /// Highest notional (0: none).
        max_notional: Decimal,
        /// The maximum applies to MARKET orders.
        apply_max_to_market: bool,
        /// Minutes of the average price for MARKET orders.
        avg_price_mins: u32,
    },
    /// `ICEBERG_PARTS`: an iceberg shows its quantity in at most `limit` parts
    /// (⌈quantity / icebergQty⌉ ≤ limit).
    IcebergParts {
        /// The most parts.
        limit: u32,
    },
    /// `TRAILING_DELTA`: a trailing stop's `trailingDelta` (bips) within [min, max]; the
    /// "above" bounds for orders whose trigger lies above the market once trailing (buy
    /// stop-losses, sell take-profits), the "below" bounds for the others.
    TrailingDelta {
        /// Least distance of a buy stop-loss or sell take-profit.
        min_above: u32,
        /// Greatest distance of a buy stop-loss or sell take-profit.
        max_above: u32,
        /// Least distance of a sell stop-loss or buy take-profit.
        min_below: u32,
        /// Greatest distance of a sell stop-loss or buy take-profit.
        max_below: u32,
    },
    /// `MAX_NUM_ORDERS`: open orders per account on the symbol. Checked by the application.
    MaxNumOrders {
        /// The limit.
        max_num_orders: u32,
    },
}

impl SymbolFilter {
    /// The dialect's `filterType`.
    pub fn filter_type(&self) -> &'static str {
        match self {
            SymbolFilter::Price { .. } => "PRICE_FILTER",
            SymbolFilter::LotSize { .. } => "LOT_SIZE",
            SymbolFilter::PercentPrice { .. } => "PERCENT_PRICE",
            SymbolFilter::Notional { .. } => "NOTIONAL",
            SymbolFilter::MaxNumOrders { .. } => "MAX_NUM_ORDERS",
            SymbolFilter::IcebergParts { .. } => "ICEBERG_PARTS",
            SymbolFilter::TrailingDelta { .. } => "TRAILING_DELTA",
        }
    }
}

/// One instrument in `exchangeInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    /// The symbol (e.g. `BTC-261225-100000-C`).
    pub symbol: String,
    /// Trading status; orders are refused unless TRADING.
    pub status: SymbolStatus,
    /// Base asset.
    pub base_asset: String,
    /// Decimal places of base quantities; a quantity with more is refused with -1111.
    pub base_asset_precision: u8,
    /// Quote asset.
    pub quote_asset: String,
    /// Decimal places of prices; a price with more is refused with -1111.
    pub quote_precision: u8,
    /// Order types accepted on the symbol.
    pub order_types: Vec<OrderType>,
    /// MARKET orders by quote quantity are accepted.
    pub quote_order_qty_market_allowed: bool,
    /// `order.cancelReplace` is accepted.
    pub cancel_replace_allowed: bool,
    /// `order.amend.keepPriority` is accepted (`allowAmend`).
    pub amend_allowed: bool,
    /// Iceberg orders (`icebergQty`) are accepted (`icebergAllowed`).
    pub iceberg_allowed: bool,
    /// Trailing stops (`trailingDelta`) are accepted (`allowTrailingStop`).
    pub trailing_allowed: bool,
    /// One-cancels-the-other order lists are accepted (`ocoAllowed`).
    pub oco_allowed: bool,
    /// One-triggers-the-other order lists are accepted (`otoAllowed`).
    pub oto_allowed: bool,
    /// Filters.
    pub filters: Vec<SymbolFilter>,
    /// The STP mode of orders that name none.
    pub default_stp: StpMode,
    /// STP modes an order may name.
    pub allowed_stp: Vec<StpMode>,
}

impl SymbolInfo {
    /// A TRADING symbol with LIMIT, LIMIT_MAKER and MARKET orders, cancel-replace and amend, STP mode
    /// NONE by default and any mode allowed, and no filters.
    pub fn new(symbol: &str, base_asset: &str, quote_asset: &str, precision: u8) -> Self {
        Self {
            symbol: symbol.to_owned(),
            status: SymbolStatus::Trading,
            base_asset: base_asset.to_owned(),
            base_asset_precision: precision,
            quote_asset: quote_asset.to_owned(),
            quote_precision: precision,
            order_types: vec![
                OrderType::Limit,
                OrderType::LimitMaker,
                OrderType::Market,
                OrderType::StopLoss,
                OrderType::StopLossLimit,
                OrderType::TakeProfit,
                OrderType::TakeProfitLimit,
            ],
            quote_order_qty_market_allowed: false,
            cancel_replace_allowed: true,
            amend_allowed: true,
            iceberg_allowed: true,
            trailing_allowed: true,
            oco_allowed: true,
            oto_allowed: true,
            filters: Vec::new(),
            default_stp: StpMode::None,
            allowed_stp: vec![
                StpMode::None,
                StpMode::ExpireTaker,
                StpMode::ExpireMaker,
                StpMode::ExpireBoth,
            ],
        }
    }

    /// The checks that need nothing but the order and this symbol, in the dialect's order:
    /// precision (-1111), PRICE_FILTER, LOT_SIZE, NOTIONAL for priced orders (-1013).
    pub(crate) fn check_order(
        &self,
        order_type: OrderType,
        price: Option<&Decimal>,
        quantity: Option<&Decimal>,
        quote_qty: Option<&Decimal>,
    ) -> Result<(), WsError> {
        if let Some(p) = price {
            if p.significant_scale() > self.quote_precision {
                return Err(WsError::too_precise("price"));
            }
        }
        if let Some(q) = quantity {
            if q.significant_scale() > self.base_asset_precision {
                return Err(WsError::too_precise("quantity"));
            }
        }
        if let Some(q) = quote_qty {
            if q.significant_scale() > self.quote_precision {
                return Err(WsError::too_precise("quoteOrderQty"));
            }
        }
        for filter in &self.filters {
            let ok = match filter {
                SymbolFilter::Price {
                    min_price,
                    max_price,
                    tick_size,
                } => price.is_none_or(|p| {
                    in_range(p, min_price, max_price)
                        && (tick_size.is_zero() || p.is_multiple_of(tick_size).unwrap_or(false))
                }),
                SymbolFilter::LotSize {
                    min_qty,
                    max_qty,
                    step_size,
                } => quantity.is_none_or(|q| {
                    in_range(q, min_qty, max_qty)
                        && (step_size.is_zero() || q.is_multiple_of(step_size).unwrap_or(false))
                }),
                SymbolFilter::Notional {
                    min_notional,
                    max_notional,
                    ..
                } if order_type != OrderType::Market => match (price, quantity) {
                    (Some(p), Some(q)) => match p.checked_mul(q) {
                        Some(n) => in_range(&n, min_notional, max_notional),
                        None => return Err(WsError::overflow("quantity")),
                    },
                    _ => true,
                },
                _ => true,
            };
            if !ok {
                return Err(WsError::filter_failure(filter.filter_type()));
            }
        }
        // A zero price or quantity with no filter to catch it is still meaningless.
        if price.is_some_and(Decimal::is_zero) {
            return Err(WsError::bad_request(
                super::error::codes::INVALID_MESSAGE,
                "Invalid price.",
            ));
        }
        if quantity.is_some_and(Decimal::is_zero) || quote_qty.is_some_and(Decimal::is_zero) {
            return Err(WsError::bad_request(
                super::error::codes::INVALID_MESSAGE,
                "Invalid quantity.",
            ));
        }
        Ok(())
    }
}

impl SymbolInfo {
    /// The checks of an iceberg's shown quantity against the order's: precision, the lot
    /// size's step and the ICEBERG_PARTS filter. One at least the quantity is no iceberg.
    pub fn check_iceberg_qty(&self, iceberg: &Decimal, quantity: &Decimal) -> Result<(), WsError> {
        if !self.iceberg_allowed {
            return Err(WsError::order_rejected(
                "Iceberg orders are not supported for this symbol.",
            ));
        }
        if iceberg.significant_scale() > self.base_asset_precision {
            return Err(WsError::too_precise("icebergQty"));
        }
        if iceberg.is_zero() {
            return Err(WsError::bad_request(
                super::error::codes::INVALID_MESSAGE,
                "Invalid icebergQty.",
            ));
        }
        for filter in &self.filters {
            let ok = match filter {
                SymbolFilter::LotSize { step_size, .. } => {
                    step_size.is_zero() || iceberg.is_multiple_of(step_size).unwrap_or(false)
                }
                // ⌈q / i⌉ ≤ limit ⇔ q ≤ i × limit.
                SymbolFilter::IcebergParts { limit } => Decimal::from_parts(u128::from(*limit), 0)
                    .ok()
                    .and_then(|l| iceberg.checked_mul(&l))
                    .is_none_or(|most| quantity <= &most),
                _ => true,
            };
            if !ok {
                return Err(WsError::filter_failure(filter.filter_type()));
            }
        }
        Ok(())
    }

    /// The checks of a trailing stop's distance: the symbol takes trailing stops, and the
    /// TRAILING_DELTA filter's bounds for the order's side and type (`above`: a buy
    /// stop-loss or a sell take-profit).
    pub fn check_trailing_delta(&self, bips: u64, above: bool) -> Result<(), WsError> {
        if !self.trailing_allowed {
            return Err(WsError::order_rejected(
                "Trailing stop orders are not supported for this symbol.",
            ));
        }
        for filter in &self.filters {
            if let SymbolFilter::TrailingDelta {
                min_above,
                max_above,
                min_below,
                max_below,
            } = filter
            {
                let (min, max) = if above {
                    (min_above, max_above)
                } else {
                    (min_below, max_below)
                };
                if bips < u64::from(*min) || bips > u64::from(*max) {
                    return Err(WsError::filter_failure(filter.filter_type()));
                }
            }
        }
        Ok(())
    }

    /// The checks of a stop price: its precision and the price filter, as for a limit price.
    pub fn check_stop_price(&self, stop: &Decimal) -> Result<(), WsError> {
        if stop.significant_scale() > self.quote_precision {
            return Err(WsError::too_precise("stopPrice"));
        }
        for filter in &self.filters {
            if let SymbolFilter::Price {
                min_price,
                max_price,
                tick_size,
            } = filter
            {
                let ok = in_range(stop, min_price, max_price)
                    && (tick_size.is_zero() || stop.is_multiple_of(tick_size).unwrap_or(false));
                if !ok {
                    return Err(WsError::filter_failure(filter.filter_type()));
                }
            }
        }
        if stop.is_zero() {
            return Err(WsError::bad_request(
                super::error::codes::INVALID_MESSAGE,
                "Invalid stop price.",
            ));
        }
        Ok(())
    }
}

/// `min <= v` and, unless `max` is zero, `v <= max`.
fn in_range(v: &Decimal, min: &Decimal, max: &Decimal) -> bool {
    v >= min && (max.is_zero() || v <= max)
}

/// The instruments an application serves, indexed by symbol. Cheap to share: the application
/// hands the session an `Arc` of the current table on every request.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    symbols: Vec<SymbolInfo>,
    index: HashMap<String, usize>,
}

impl SymbolTable {
    /// A table of `symbols`; a later duplicate replaces an earlier one.
    pub fn new(symbols: Vec<SymbolInfo>) -> Self {
        let mut t = SymbolTable::default();
        for s in symbols {
            match t.index.get(&s.symbol) {
                Some(&i) => t.symbols[i] = s,
                None => {
                    t.index.insert(s.symbol.clone(), t.symbols.len());
                    t.symbols.push(s);
                }
            }
        }
        t
    }

    /// The symbol's description.
    pub fn get(&self, symbol: &str) -> Option<&SymbolInfo> {
        self.index.get(symbol).map(|&i| &self.symbols[i])
    }

    /// Every symbol, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &SymbolInfo> {
        self.symbols.iter()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}
