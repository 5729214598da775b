#!/usr/bin/env python3
"""A WebSocket API client built on the official Binance connector for Python (`binance-connector`
on PyPI), used unmodified: its `SpotWebsocketAPIClient` signs every request itself (HMAC-SHA256
over the url-encoded, sorted params, keyed with the secret's text).

Drives Portcullis's WebSocket API (Binance Spot WebSocket API v3 dialect): order.place (a LIMIT
order resting far from the market), order.status, order.cancel, then allOrders (the connector's
`order_history`, asked again until the cancelled order shows: the history follows the journal)
and myTrades, then a trailing stop-loss limit sell (`trailingDelta`, no `stopPrice`) placed and
cancelled, then a bracket (`orderList.place.otoco`) listed (`openOrderLists.status`) and
cancelled (`orderList.cancel`). Prints each result as one line `<method> ok: <result JSON>`; exits non-zero on
any error answer, timeout or closed connection.
"""
import argparse
import json
import queue
import sys
import time

from binance.websocket.spot.websocket_api import SpotWebsocketAPIClient

TIMEOUT_S = 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--symbol", default="BTC-PERP")
    ap.add_argument("--price", default="100")
    ap.add_argument("--quantity", default="0.01")
    ap.add_argument("--above", default="110")
    ap.add_argument("--below", default="90")
    args = ap.parse_args()

    inbox = queue.Queue()

    def on_message(_client, message):
        inbox.put(message)

    def on_close(_client):
        inbox.put(None)

    def on_error(_client, error):
        # Reported only while a request waits; the connector's own stop() may end its reader
        # thread with "connection lost" once the socket is closed.
        inbox.put(error)

    client = SpotWebsocketAPIClient(
        stream_url=args.url,
        api_key=args.key_id,
        api_secret=args.secret,
        on_message=on_message,
        on_close=on_close,
        on_error=on_error,
        timeout=TIMEOUT_S,
    )

    def answer(req_id):
        """The answer to request `req_id` (events and other answers are skipped)."""
        while True:
            try:
                raw = inbox.get(timeout=TIMEOUT_S)
            except queue.Empty:
                fail(f"no answer to {req_id} within {TIMEOUT_S} s")
            if raw is None:
                fail(f"connection closed while waiting for {req_id}")
            if isinstance(raw, Exception):
                fail(f"connection error while waiting for {req_id}: {raw!r}")
            msg = json.loads(raw)
            if msg.get("id") != req_id:
                continue
            if msg.get("status") != 200 or "error" in msg:
                fail(f"{req_id} failed: {raw}")
            return msg["result"]

    def fail(text):
        print(f"error: {text}", flush=True)
        client.stop()
        sys.exit(1)

    client.new_order(
        id="place-1",
        symbol=args.symbol,
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        price=args.price,
        quantity=args.quantity,
        newClientOrderId="interop-1",
    )
    placed = answer("place-1")
    print("order.place ok: " + json.dumps(placed, sort_keys=True), flush=True)
    order_id = placed.get("orderId")
    if order_id is None:
        fail(f"order.place result without orderId: {placed}")

    client.get_order(id="status-1", symbol=args.symbol, orderId=order_id)
    status = answer("status-1")
    print("order.status ok: " + json.dumps(status, sort_keys=True), flush=True)

    client.cancel_order(id="cancel-1", symbol=args.symbol, orderId=order_id)
    cancelled = answer("cancel-1")
    print("order.cancel ok: " + json.dumps(cancelled, sort_keys=True), flush=True)

    deadline = time.monotonic() + TIMEOUT_S
    attempt = 0
    while True:
        attempt += 1
        client.order_history(id=f"history-{attempt}", symbol=args.symbol, limit=10)
        orders = answer(f"history-{attempt}")
        if any(o.get("orderId") == order_id and o.get("status") == "CANCELED" for o in orders):
            break
        if time.monotonic() > deadline:
            fail(f"allOrders never showed the cancelled order: {orders}")
        time.sleep(0.05)
    print("allOrders ok: " + json.dumps(orders, sort_keys=True), flush=True)

    client.my_trades(id="trades-1", symbol=args.symbol)
    trades = answer("trades-1")
    print("myTrades ok: " + json.dumps(trades, sort_keys=True), flush=True)

    # A trailing stop: the connector passes trailingDelta through like any parameter.
    client.new_order(
        id="trail-1",
        symbol=args.symbol,
        side="SELL",
        type="STOP_LOSS_LIMIT",
        timeInForce="GTC",
        price=args.price,
        quantity=args.quantity,
        trailingDelta=250,
        newClientOrderId="interop-trail",
        newOrderRespType="RESULT",
    )
    trailing = answer("trail-1")
    print("trailing order.place ok: " + json.dumps(trailing, sort_keys=True), flush=True)
    client.cancel_order(id="trail-cancel", symbol=args.symbol, origClientOrderId="interop-trail")
    cancelled = answer("trail-cancel")
    print("trailing order.cancel ok: " + json.dumps(cancelled, sort_keys=True), flush=True)

    # A bracket (OTOCO): a resting buy, and the sell pair placed once it fills; listed among
    # the open order lists, then cancelled whole.
    client.new_otoco_order(
        id="otoco-1",
        symbol=args.symbol,
        workingType="LIMIT",
        workingSide="BUY",
        workingPrice=args.price,
        workingQuantity=args.quantity,
        workingTimeInForce="GTC",
        pendingSide="SELL",
        pendingQuantity=args.quantity,
        pendingAboveType="LIMIT_MAKER",
        pendingAbovePrice=args.above,
        pendingBelowType="STOP_LOSS",
        pendingBelowStopPrice=args.below,
        listClientOrderId="interop-bracket",
        newOrderRespType="RESULT",
    )
    bracket = answer("otoco-1")
    print("orderList.place.otoco ok: " + json.dumps(bracket, sort_keys=True), flush=True)
    client.get_open_oco_orders(id="open-lists-1")
    lists = answer("open-lists-1")
    print("openOrderLists.status ok: " + json.dumps(lists, sort_keys=True), flush=True)
    client.cancel_oco_order(
        id="list-cancel-1", symbol=args.symbol, orderListId=bracket.get("orderListId")
    )
    cancelled = answer("list-cancel-1")
    print("orderList.cancel ok: " + json.dumps(cancelled, sort_keys=True), flush=True)

    client.stop()


if __name__ == "__main__":
    main()
