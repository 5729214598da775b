#!/usr/bin/env python3
"""A FIX 4.4 initiator built on the third-party `simplefix` package (PyPI).

Drives a Portcullis session over TCP: Logon, TestRequest/Heartbeat, NewOrderSingle (acknowledged
with an ExecutionReport, ExecType=0 New), Logout. Exits non-zero on any deviation.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import socket
import sys

import simplefix


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class Client:
    def __init__(self, port, sender, target):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.parser = simplefix.FixParser()
        self.sender = sender
        self.target = target
        self.seq = 1

    def send(self, msg_type, fields, sending_time=None):
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, self.sender, header=True)
        m.append_pair(56, self.target, header=True)
        m.append_pair(34, self.seq, header=True)
        m.append_pair(52, sending_time or now(), header=True)
        for tag, value in fields:
            m.append_pair(tag, value)
        self.seq += 1
        self.sock.sendall(m.encode())

    def recv(self):
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                return msg
            data = self.sock.recv(4096)
            if not data:
                raise SystemExit("server closed the connection")
            self.parser.append_buffer(data)

    def expect(self, msg_type):
        msg = self.recv()
        got = msg.get(35).decode()
        if got != msg_type:
            raise SystemExit(f"expected 35={msg_type}, got {msg}")
        return msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sender", default="TW")
    ap.add_argument("--target", default="ISLD")
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True)
    args = ap.parse_args()

    c = Client(args.port, args.sender, args.target)
    # The logon signature as the README documents it: HMAC-SHA256 keyed with the secret's
    # text over SendingTime, MsgType, MsgSeqNum, SenderCompID, TargetCompID, Username.
    sending_time = now()
    prehash = "\x01".join([sending_time, "A", str(c.seq), args.sender, args.target, args.key_id])
    raw = base64.b64encode(
        hmac.new(args.secret.encode(), prehash.encode(), hashlib.sha256).digest()
    ).decode()
    c.send("A", [(98, 0), (108, 30), (141, "Y"), (553, args.key_id), (95, len(raw)), (96, raw)],
           sending_time=sending_time)
    logon = c.expect("A")
    assert logon.get(108) == b"30", logon
    print("logon ok")

    c.send("1", [(112, "INTEROP")])
    hb = c.expect("0")
    assert hb.get(112) == b"INTEROP", hb
    print("test request ok")

    c.send("D", [(11, "PY-1"), (1, "TW-ACC"), (55, "BTC-PERP"), (54, "1"),
                 (60, now()), (38, "2"), (40, "2"), (44, "101.5"), (59, "1")])
    er = c.expect("8")
    assert er.get(11) == b"PY-1", er
    assert er.get(150) == b"0" and er.get(39) == b"0", er
    assert er.get(151) == b"2.000" and er.get(14) == b"0.000", er
    assert er.get(44) == b"101.5", er
    print("order acknowledged: ExecType=%s OrdStatus=%s OrderID=%s"
          % (er.get(150).decode(), er.get(39).decode(), er.get(37).decode()))

    # An order list as crypto venues' FIX clients send it: one cancels the other (a stop below,
    # a post-only limit above), triggering instructions inside the orders, the contingency and
    # the client's list id after them; then cancelled whole by ListCancelRequest.
    c.send("E", [(73, "2"),
                 (11, "PY-OS"), (55, "BTC-PERP"), (54, "2"), (38, "1"), (40, "3"), (99, "90"),
                 (25010, "1"), (25011, "2"), (25012, "1"), (25013, "2"),
                 (11, "PY-OT"), (55, "BTC-PERP"), (54, "2"), (38, "1"), (40, "2"), (18, "6"),
                 (44, "120"), (25010, "1"), (25011, "1"), (25012, "0"), (25013, "2"),
                 (1385, "1"), (25014, "PY-L1")])
    first, second = c.expect("8"), c.expect("8")
    assert first.get(11) == b"PY-OS" and second.get(11) == b"PY-OT", (first, second)
    list_id = first.get(66)
    assert list_id is not None and second.get(66) == list_id, second
    status = c.expect("N")
    assert status.get(66) == list_id and status.get(25014) == b"PY-L1", status
    assert status.get(429) == b"4" and status.get(431) == b"3", status
    assert status.get(11, 1) == b"PY-OS" and status.get(11, 2) == b"PY-OT", status
    c.send("K", [(66, list_id.decode()), (60, now())])
    assert c.expect("N").get(431) == b"4"
    assert {c.expect("8").get(39), c.expect("8").get(39)} == {b"4"}
    done = c.expect("N")
    assert done.get(429) == b"5" and done.get(431) == b"6", done
    print("order list placed and cancelled: ListID=%s" % list_id.decode())

    # Mass quoting: a two-sided quote in simplefix's nested repeating groups (NoQuoteSets,
    # NoQuoteEntries), every entry acknowledged (QuoteResponseLevel 2), then all quotes out.
    c.send("i", [(117, "PY-Q1"), (537, "1"), (301, "2"), (296, "1"), (302, "1"), (304, "1"),
                 (295, "1"), (299, "PY-E1"), (55, "BTC-PERP"), (132, "100.5"), (133, "102"),
                 (134, "1"), (135, "1")])
    ack = c.expect("b")
    assert ack.get(117) == b"PY-Q1" and ack.get(297) == b"0", ack
    assert ack.get(299) == b"PY-E1" and ack.get(368) is None, ack
    print("mass quote acknowledged: QuoteStatus=%s" % ack.get(297).decode())
    c.send("Z", [(117, "PY-C1"), (298, "4")])
    ack = c.expect("b")
    assert ack.get(117) == b"PY-C1" and ack.get(297) == b"4", ack
    print("quote cancel acknowledged: QuoteStatus=%s" % ack.get(297).decode())

    c.send("5", [])
    c.expect("5")
    print("logout ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
