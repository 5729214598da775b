//! The fields Portcullis knows, with their type, their enumerated values and the versions that
//! define them. A tag whose type or values changed between versions has one entry per variant,
//! each limited to its versions.

use super::{FieldType as T, ALL, V42, V44, V44UP, V50};

/// Allowed values of an enumerated field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Domain {
    /// Any value of the type.
    Any,
    /// One character from the set (bit `b` set allows byte `b`; ASCII only).
    Chars(u128),
    /// An integer in 0..=127 whose bit is set.
    Ints(u128),
}

/// One field of the dictionary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDef {
    pub tag: u32,
    pub name: &'static str,
    pub ty: T,
    /// Versions (bit mask of `V42`, `V44`, `V50`) that define this entry.
    pub versions: u8,
    pub domain: Domain,
}

const fn f(tag: u32, name: &'static str, ty: T) -> FieldDef {
    FieldDef {
        tag,
        name,
        ty,
        versions: ALL,
        domain: Domain::Any,
    }
}

impl FieldDef {
    /// Limits the entry to some versions.
    const fn v(self, versions: u8) -> Self {
        FieldDef { versions, ..self }
    }

    /// Sets the enumerated values.
    const fn d(self, domain: Domain) -> Self {
        FieldDef { domain, ..self }
    }
}

/// The set of single-character values in `s`.
const fn chars(s: &[u8]) -> Domain {
    let mut m = 0u128;
    let mut i = 0;
    while i < s.len() {
        assert!(s[i] < 128);
        m |= 1u128 << s[i];
        i += 1;
    }
    Domain::Chars(m)
}

/// Integers `lo..=hi` (at most 127) as a bit set.
const fn span(lo: u32, hi: u32) -> u128 {
    assert!(lo <= hi && hi < 128);
    let mut m = 0u128;
    let mut i = lo;
    while i <= hi {
        m |= 1u128 << i;
        i += 1;
    }
    m
}

/// The single integer `n` (at most 127) as a bit set.
const fn bit(n: u32) -> u128 {
    1u128 << n
}

const fn ints(m: u128) -> Domain {
    Domain::Ints(m)
}

const YN: Domain = chars(b"YN");
const APPL_VER_ID: Domain = chars(b"0123456789");

/// Every field, sorted by tag. At most one entry per tag and version (checked at compile time).
pub(crate) const FIELDS: &[FieldDef] = &[
    f(1, "Account", T::String),
    f(6, "AvgPx", T::Price),
    f(7, "BeginSeqNo", T::SeqNum),
    f(8, "BeginString", T::String),
    f(9, "BodyLength", T::Length),
    f(10, "CheckSum", T::String),
    f(11, "ClOrdID", T::String),
    f(12, "Commission", T::Amt),
    f(13, "CommType", T::Char).d(chars(b"123456")),
    f(14, "CumQty", T::Qty),
    f(15, "Currency", T::Currency),
    f(16, "EndSeqNo", T::SeqNum),
    f(17, "ExecID", T::String),
    f(18, "ExecInst", T::MultipleCharValue),
    f(19, "ExecRefID", T::String),
    f(20, "ExecTransType", T::Char).v(V42).d(chars(b"0123")),
    f(21, "HandlInst", T::Char).d(chars(b"123")),
    f(22, "SecurityIDSource", T::String),
    f(23, "IOIID", T::String),
    f(29, "LastCapacity", T::Char).d(chars(b"1234")),
    f(30, "LastMkt", T::Exchange),
    f(31, "LastPx", T::Price),
    f(32, "LastQty", T::Qty),
    f(34, "MsgSeqNum", T::SeqNum),
    f(35, "MsgType", T::String),
    f(36, "NewSeqNo", T::SeqNum),
    f(37, "OrderID", T::String),
    f(38, "OrderQty", T::Qty),
    // 5 (Replaced) is listed as "no longer used" from 4.3 on; still accepted.
    f(39, "OrdStatus", T::Char).d(chars(b"0123456789ABCDE")),
    f(40, "OrdType", T::Char)
        .v(V42)
        .d(chars(b"123456789ABCDEFGHIP")),
    f(40, "OrdType", T::Char)
        .v(V44)
        .d(chars(b"123456789ABCDEFGHIJKLMP")),
    f(40, "OrdType", T::Char)
        .v(V50)
        .d(chars(b"123456789ABCDEFGHIJKLMPQRS")),
    f(41, "OrigClOrdID", T::String),
    f(43, "PossDupFlag", T::Boolean),
    f(44, "Price", T::Price),
    f(45, "RefSeqNum", T::SeqNum),
    f(47, "Rule80A", T::Char),
    f(48, "SecurityID", T::String),
    f(49, "SenderCompID", T::String),
    f(50, "SenderSubID", T::String),
    f(52, "SendingTime", T::UtcTimestamp),
    f(54, "Side", T::Char).v(V42).d(chars(b"123456789")),
    f(54, "Side", T::Char)
        .v(V44UP)
        .d(chars(b"123456789ABCDEFG")),
    f(55, "Symbol", T::String),
    f(56, "TargetCompID", T::String),
    f(57, "TargetSubID", T::String),
    f(58, "Text", T::String),
    f(59, "TimeInForce", T::Char).v(V42).d(chars(b"0123456")),
    f(59, "TimeInForce", T::Char).v(V44).d(chars(b"01234567")),
    f(59, "TimeInForce", T::Char).v(V50).d(chars(b"0123456789")),
    f(60, "TransactTime", T::UtcTimestamp),
    // SettlType is a char in 4.2/4.4 and a tenor string in 5.0; both read as text.
    f(62, "ValidUntilTime", T::UtcTimestamp),
    f(63, "SettlType", T::String),
    f(64, "SettlDate", T::LocalMktDate),
    f(65, "SymbolSfx", T::String),
    f(66, "ListID", T::String),
    f(67, "ListSeqNo", T::Int),
    f(68, "TotNoOrders", T::Int),
    f(70, "AllocID", T::String),
    f(73, "NoOrders", T::NumInGroup),
    f(75, "TradeDate", T::LocalMktDate),
    f(76, "ExecBroker", T::String).v(V42),
    // OpenClose in 4.2 (O, C), PositionEffect from 4.3 on.
    f(77, "PositionEffect", T::Char).d(chars(b"OCFRN")),
    f(78, "NoAllocs", T::NumInGroup),
    f(79, "AllocAccount", T::String),
    f(80, "AllocQty", T::Qty),
    f(81, "ProcessCode", T::Char).d(chars(b"0123456")),
    f(82, "NoRpts", T::Int),
    f(83, "RptSeq", T::Int),
    f(84, "CxlQty", T::Qty),
    f(89, "Signature", T::Data(93)),
    f(90, "SecureDataLen", T::DataLength(91)),
    f(91, "SecureData", T::Data(90)),
    f(93, "SignatureLength", T::DataLength(89)),
    f(95, "RawDataLength", T::DataLength(96)),
    f(96, "RawData", T::Data(95)),
    f(97, "PossResend", T::Boolean),
    f(98, "EncryptMethod", T::Int).d(ints(span(0, 6))),
    f(99, "StopPx", T::Price),
    f(100, "ExDestination", T::Exchange),
    f(102, "CxlRejReason", T::Int).v(V42).d(ints(span(0, 3))),
    f(102, "CxlRejReason", T::Int)
        .v(V44)
        .d(ints(span(0, 6) | bit(99))),
    f(102, "CxlRejReason", T::Int)
        .v(V50)
        .d(ints(span(0, 6) | bit(18) | bit(99))),
    f(103, "OrdRejReason", T::Int).v(V42).d(ints(span(0, 8))),
    f(103, "OrdRejReason", T::Int)
        .v(V44)
        .d(ints(span(0, 15) | bit(99))),
    f(103, "OrdRejReason", T::Int)
        .v(V50)
        .d(ints(span(0, 18) | bit(99))),
    f(106, "Issuer", T::String),
    f(107, "SecurityDesc", T::String),
    f(108, "HeartBtInt", T::Int),
    f(109, "ClientID", T::String).v(V42),
    f(110, "MinQty", T::Qty),
    f(111, "MaxFloor", T::Qty),
    f(112, "TestReqID", T::String),
    f(113, "ReportToExch", T::Boolean),
    f(114, "LocateReqd", T::Boolean),
    f(115, "OnBehalfOfCompID", T::String),
    f(116, "OnBehalfOfSubID", T::String),
    f(117, "QuoteID", T::String),
    f(118, "NetMoney", T::Amt),
    f(119, "SettlCurrAmt", T::Amt),
    f(120, "SettlCurrency", T::Currency),
    f(121, "ForexReq", T::Boolean),
    f(122, "OrigSendingTime", T::UtcTimestamp),
    f(123, "GapFillFlag", T::Boolean),
    f(126, "ExpireTime", T::UtcTimestamp),
    f(128, "DeliverToCompID", T::String),
    f(129, "DeliverToSubID", T::String),
    f(131, "QuoteReqID", T::String),
    f(132, "BidPx", T::Price),
    f(133, "OfferPx", T::Price),
    f(134, "BidSize", T::Qty),
    f(135, "OfferSize", T::Qty),
    f(140, "PrevClosePx", T::Price),
    f(141, "ResetSeqNumFlag", T::Boolean),
    f(142, "SenderLocationID", T::String),
    f(143, "TargetLocationID", T::String),
    f(144, "OnBehalfOfLocationID", T::String),
    f(145, "DeliverToLocationID", T::String),
    f(146, "NoRelatedSym", T::NumInGroup),
    f(150, "ExecType", T::Char)
        .v(V42)
        .d(chars(b"0123456789ABCDE")),
    // 4.3 replaced PartialFill/Fill (1, 2) by Trade (F).
    f(150, "ExecType", T::Char)
        .v(V44)
        .d(chars(b"03456789ABCDEFGHI")),
    f(150, "ExecType", T::Char)
        .v(V50)
        .d(chars(b"03456789ABCDEFGHIJKL")),
    f(151, "LeavesQty", T::Qty),
    f(152, "CashOrderQty", T::Qty),
    f(155, "SettlCurrFxRate", T::Float),
    f(156, "SettlCurrFxRateCalc", T::Char).d(chars(b"MD")),
    f(167, "SecurityType", T::String),
    f(168, "EffectiveTime", T::UtcTimestamp),
    f(192, "OrderQty2", T::Qty),
    f(193, "SettlDate2", T::LocalMktDate),
    f(194, "LastSpotRate", T::Price),
    f(195, "LastForwardPoints", T::PriceOffset),
    f(198, "SecondaryOrderID", T::String),
    f(200, "MaturityMonthYear", T::MonthYear),
    f(201, "PutOrCall", T::Int).d(ints(span(0, 1))),
    f(202, "StrikePrice", T::Price),
    f(203, "CoveredOrUncovered", T::Int).d(ints(span(0, 1))),
    f(204, "CustomerOrFirm", T::Int).v(V42).d(ints(span(0, 1))),
    f(205, "MaturityDay", T::DayOfMonth).v(V42),
    f(206, "OptAttribute", T::Char),
    f(207, "SecurityExchange", T::Exchange),
    f(210, "MaxShow", T::Qty),
    // PegDifference (PriceOffset) in 4.2, PegOffsetValue (float) from 4.4 on.
    f(211, "PegOffsetValue", T::Float),
    f(212, "XmlDataLen", T::DataLength(213)),
    f(213, "XmlData", T::Data(212)),
    f(223, "CouponRate", T::Percentage),
    f(229, "TradeOriginationDate", T::LocalMktDate).v(V44UP),
    f(231, "ContractMultiplier", T::Float),
    f(262, "MDReqID", T::String),
    f(263, "SubscriptionRequestType", T::Char).d(chars(b"012")),
    f(264, "MarketDepth", T::Int),
    f(265, "MDUpdateType", T::Int).d(ints(span(0, 1))),
    f(266, "AggregatedBook", T::Boolean),
    f(267, "NoMDEntryTypes", T::NumInGroup),
    f(268, "NoMDEntries", T::NumInGroup),
    f(269, "MDEntryType", T::Char).d(chars(b"0123456789ABCDEFGHJKLMNOPQSTUVWXYZabcde")),
    f(270, "MDEntryPx", T::Price),
    f(271, "MDEntrySize", T::Qty),
    f(281, "MDReqRejReason", T::Char).d(chars(b"0123456789ABCDE")),
    f(290, "MDEntryPositionNo", T::Int),
    f(293, "DefBidSize", T::Qty).v(V44UP),
    f(294, "DefOfferSize", T::Qty).v(V44UP),
    f(295, "NoQuoteEntries", T::NumInGroup).v(V44UP),
    f(296, "NoQuoteSets", T::NumInGroup).v(V44UP),
    f(297, "QuoteStatus", T::Int).v(V44).d(ints(span(0, 15))),
    f(297, "QuoteStatus", T::Int).v(V50).d(ints(span(0, 19))),
    f(298, "QuoteCancelType", T::Int).v(V44).d(ints(span(1, 4))),
    f(298, "QuoteCancelType", T::Int).v(V50).d(ints(span(1, 8))),
    f(299, "QuoteEntryID", T::String).v(V44UP),
    f(300, "QuoteRejectReason", T::Int)
        .v(V44UP)
        .d(ints(span(1, 11) | bit(99))),
    f(301, "QuoteResponseLevel", T::Int)
        .v(V44UP)
        .d(ints(span(0, 3))),
    f(302, "QuoteSetID", T::String).v(V44UP),
    f(304, "TotNoQuoteEntries", T::Int).v(V44UP),
    f(311, "UnderlyingSymbol", T::String),
    f(320, "SecurityReqID", T::String),
    f(322, "SecurityResponseID", T::String),
    f(324, "SecurityStatusReqID", T::String),
    f(325, "UnsolicitedIndicator", T::Boolean),
    // Open in every version (4.2 lists 1-21, later versions more); values are the sender's.
    f(326, "SecurityTradingStatus", T::Int),
    f(335, "TradSesReqID", T::String),
    f(336, "TradingSessionID", T::String),
    f(337, "ContraTrader", T::String),
    f(338, "TradSesMethod", T::Int).d(ints(span(1, 3))),
    f(339, "TradSesMode", T::Int).d(ints(span(1, 3))),
    f(340, "TradSesStatus", T::Int).v(V42).d(ints(span(1, 5))),
    f(340, "TradSesStatus", T::Int).v(V44UP).d(ints(span(0, 6))),
    f(347, "MessageEncoding", T::String),
    f(348, "EncodedIssuerLen", T::DataLength(349)),
    f(349, "EncodedIssuer", T::Data(348)),
    f(350, "EncodedSecurityDescLen", T::DataLength(351)),
    f(351, "EncodedSecurityDesc", T::Data(350)),
    f(354, "EncodedTextLen", T::DataLength(355)),
    f(355, "EncodedText", T::Data(354)),
    f(367, "QuoteSetValidUntilTime", T::UtcTimestamp).v(V44UP),
    f(368, "QuoteEntryRejectReason", T::Int)
        .v(V44UP)
        .d(ints(span(1, 12) | bit(99))),
    f(369, "LastMsgSeqNumProcessed", T::SeqNum),
    f(370, "OnBehalfOfSendingTime", T::UtcTimestamp).v(V42 | V44),
    f(371, "RefTagID", T::Int),
    f(372, "RefMsgType", T::String),
    f(373, "SessionRejectReason", T::Int)
        .v(V42)
        .d(ints(span(0, 11))),
    f(373, "SessionRejectReason", T::Int)
        .v(V44)
        .d(ints(span(0, 17) | bit(99))),
    f(373, "SessionRejectReason", T::Int)
        .v(V50)
        .d(ints(span(0, 18) | bit(99))),
    f(375, "ContraBroker", T::String),
    f(376, "ComplianceID", T::String),
    f(377, "SolicitedFlag", T::Boolean),
    f(378, "ExecRestatementReason", T::Int),
    f(379, "BusinessRejectRefID", T::String),
    f(380, "BusinessRejectReason", T::Int)
        .v(V42)
        .d(ints(span(0, 7))),
    f(380, "BusinessRejectReason", T::Int)
        .v(V44)
        .d(ints(span(0, 7) | bit(18))),
    f(380, "BusinessRejectReason", T::Int)
        .v(V50)
        .d(ints(span(0, 8) | bit(18))),
    f(381, "GrossTradeAmt", T::Amt),
    f(382, "NoContraBrokers", T::NumInGroup),
    f(383, "MaxMessageSize", T::Length),
    f(384, "NoMsgTypes", T::NumInGroup),
    f(385, "MsgDirection", T::Char).d(chars(b"SR")),
    f(386, "NoTradingSessions", T::NumInGroup),
    f(388, "DiscretionInst", T::Char).d(chars(b"0123456")),
    f(389, "DiscretionOffsetValue", T::Float),
    f(393, "TotNoRelatedSym", T::Int).v(V44UP),
    f(394, "BidType", T::Int).d(ints(span(1, 3))),
    f(423, "PriceType", T::Int).v(V44UP),
    f(424, "DayOrderQty", T::Qty),
    f(425, "DayCumQty", T::Qty),
    f(426, "DayAvgPx", T::Price),
    f(427, "GTBookingInst", T::Int).d(ints(span(0, 2))),
    f(429, "ListStatusType", T::Int).d(ints(span(1, 6))),
    f(431, "ListOrderStatus", T::Int).d(ints(span(1, 7))),
    f(432, "ExpireDate", T::LocalMktDate),
    f(434, "CxlRejResponseTo", T::Char).d(chars(b"12")),
    f(437, "ContraTradeQty", T::Qty),
    f(438, "ContraTradeTime", T::UtcTimestamp),
    f(439, "ClearingFirm", T::String).v(V42),
    f(440, "ClearingAccount", T::String).v(V42),
    f(442, "MultiLegReportingType", T::Char).d(chars(b"123")),
    f(447, "PartyIDSource", T::Char)
        .v(V44)
        .d(chars(b"123456789ABCDEFGHI")),
    f(447, "PartyIDSource", T::Char)
        .v(V50)
        .d(chars(b"123456789ABCDEFGHIJKLMNOP")),
    f(448, "PartyID", T::String).v(V44UP),
    f(452, "PartyRole", T::Int).v(V44).d(ints(span(1, 39))),
    // 5.0 SP2 and its extension packs define roles past 100.
    f(452, "PartyRole", T::Int).v(V50).d(ints(span(1, 127))),
    f(453, "NoPartyIDs", T::NumInGroup).v(V44UP),
    f(460, "Product", T::Int).v(V44UP).d(ints(span(1, 13))),
    f(461, "CFICode", T::String).v(V44UP),
    f(464, "TestMessageIndicator", T::Boolean).v(V44UP),
    f(467, "IndividualAllocID", T::String).v(V44UP),
    f(479, "CommCurrency", T::Currency).v(V44UP),
    f(494, "Designation", T::String).v(V44UP),
    f(497, "FundRenewWaiv", T::Char).v(V44UP).d(YN),
    f(523, "PartySubID", T::String).v(V44UP),
    f(526, "SecondaryClOrdID", T::String).v(V44UP),
    f(527, "SecondaryExecID", T::String).v(V44UP),
    f(528, "OrderCapacity", T::Char)
        .v(V44UP)
        .d(chars(b"ABGIPRW")),
    f(529, "OrderRestrictions", T::MultipleCharValue).v(V44UP),
    f(530, "MassCancelRequestType", T::Char)
        .v(V44)
        .d(chars(b"1234567")),
    f(530, "MassCancelRequestType", T::Char)
        .v(V50)
        .d(chars(b"123456789A")),
    f(531, "MassCancelResponse", T::Char)
        .v(V44)
        .d(chars(b"01234567")),
    f(531, "MassCancelResponse", T::Char)
        .v(V50)
        .d(chars(b"0123456789A")),
    f(532, "MassCancelRejectReason", T::Int)
        .v(V44UP)
        .d(ints(span(0, 8) | bit(99))),
    f(533, "TotalAffectedOrders", T::Int).v(V44UP),
    f(534, "NoAffectedOrders", T::NumInGroup).v(V44UP),
    f(535, "AffectedOrderID", T::String).v(V44UP),
    f(536, "AffectedSecondaryOrderID", T::String).v(V44UP),
    f(537, "QuoteType", T::Int).v(V44UP).d(ints(span(0, 3))),
    f(541, "MaturityDate", T::LocalMktDate).v(V44UP),
    f(544, "CashMargin", T::Char).v(V44UP).d(chars(b"123")),
    // Not in the FIX 4.2 dictionary; accepted on 4.2 Logons as the usual extension (auth).
    f(553, "Username", T::String),
    f(554, "Password", T::String),
    f(559, "SecurityListRequestType", T::Int)
        .v(V44)
        .d(ints(span(0, 4))),
    f(559, "SecurityListRequestType", T::Int)
        .v(V50)
        .d(ints(span(0, 5))),
    f(560, "SecurityRequestResult", T::Int)
        .v(V44UP)
        .d(ints(span(0, 5))),
    f(561, "RoundLot", T::Qty),
    f(562, "MinTradeVol", T::Qty),
    f(567, "TradSesStatusRejReason", T::Int)
        .v(V44UP)
        .d(ints(bit(1) | bit(99))),
    f(573, "MatchStatus", T::Char).v(V44UP).d(chars(b"012")),
    f(581, "AccountType", T::Int).v(V44UP),
    f(582, "CustOrderCapacity", T::Int)
        .v(V44UP)
        .d(ints(span(1, 4))),
    f(583, "ClOrdLinkID", T::String).v(V44UP),
    f(584, "MassStatusReqID", T::String).v(V44UP),
    f(585, "MassStatusReqType", T::Int)
        .v(V44)
        .d(ints(span(1, 8))),
    f(585, "MassStatusReqType", T::Int)
        .v(V50)
        .d(ints(span(1, 10))),
    f(586, "OrigOrdModTime", T::UtcTimestamp).v(V44UP),
    f(589, "DayBookingInst", T::Char).v(V44UP).d(chars(b"012")),
    f(590, "BookingUnit", T::Char).v(V44UP).d(chars(b"012")),
    f(591, "PreallocMethod", T::Char).v(V44UP).d(chars(b"01")),
    f(625, "TradingSessionSubID", T::String).v(V44UP),
    f(627, "NoHops", T::NumInGroup).v(V44UP),
    f(628, "HopCompID", T::String).v(V44UP),
    f(629, "HopSendingTime", T::UtcTimestamp).v(V44UP),
    f(630, "HopRefID", T::SeqNum).v(V44UP),
    f(635, "ClearingFeeIndicator", T::String).v(V44UP),
    f(636, "WorkingIndicator", T::Boolean).v(V44UP),
    f(640, "Price2", T::Price).v(V44UP),
    f(655, "ContraLegRefID", T::String).v(V44UP),
    f(660, "AcctIDSource", T::Int).v(V44UP),
    f(661, "AllocAcctIDSource", T::Int).v(V44UP),
    f(669, "LastParPx", T::Price).v(V44UP),
    f(702, "NoPositions", T::NumInGroup).v(V44UP),
    f(703, "PosType", T::String).v(V44UP),
    f(704, "LongQty", T::Qty).v(V44UP),
    f(705, "ShortQty", T::Qty).v(V44UP),
    f(706, "PosQtyStatus", T::Int).v(V44UP).d(ints(span(0, 2))),
    f(710, "PosReqID", T::String).v(V44UP),
    f(711, "NoUnderlyings", T::NumInGroup).v(V44UP),
    f(715, "ClearingBusinessDate", T::LocalMktDate).v(V44UP),
    f(716, "SettlSessID", T::String).v(V44UP),
    f(717, "SettlSessSubID", T::String).v(V44UP),
    f(721, "PosMaintRptID", T::String).v(V44UP),
    f(724, "PosReqType", T::Int).v(V44).d(ints(span(0, 3))),
    f(724, "PosReqType", T::Int).v(V50).d(ints(span(0, 5))),
    f(725, "ResponseTransportType", T::Int)
        .v(V44UP)
        .d(ints(span(0, 1))),
    f(726, "ResponseDestination", T::String).v(V44UP),
    f(727, "TotalNumPosReports", T::Int).v(V44UP),
    f(728, "PosReqResult", T::Int)
        .v(V44UP)
        .d(ints(span(0, 4) | bit(99))),
    f(729, "PosReqStatus", T::Int).v(V44UP).d(ints(span(0, 2))),
    f(730, "SettlPrice", T::Price).v(V44UP),
    f(731, "SettlPriceType", T::Int)
        .v(V44UP)
        .d(ints(span(1, 2))),
    f(734, "PriorSettlPrice", T::Price).v(V44UP),
    f(736, "AllocSettlCurrency", T::Currency).v(V44UP),
    f(762, "SecuritySubType", T::String).v(V44UP),
    f(775, "BookingType", T::Int).v(V44UP).d(ints(span(0, 2))),
    f(789, "NextExpectedMsgSeqNum", T::SeqNum).v(V44UP),
    f(790, "OrdStatusReqID", T::String).v(V44UP),
    f(797, "CopyMsgIndicator", T::Boolean).v(V44UP),
    f(802, "NoPartySubIDs", T::NumInGroup).v(V44UP),
    f(803, "PartySubIDType", T::Int).v(V44UP),
    f(835, "PegMoveType", T::Int).v(V44UP).d(ints(span(0, 1))),
    f(836, "PegOffsetType", T::Int).v(V44UP).d(ints(span(0, 3))),
    f(837, "PegLimitType", T::Int).v(V44UP).d(ints(span(0, 2))),
    f(838, "PegRoundDirection", T::Int)
        .v(V44UP)
        .d(ints(span(1, 2))),
    f(839, "PeggedPrice", T::Price).v(V44UP),
    f(840, "PegScope", T::Int).v(V44UP).d(ints(span(1, 4))),
    f(845, "DiscretionPrice", T::Price).v(V44UP),
    f(847, "TargetStrategy", T::Int).v(V44UP),
    f(848, "TargetStrategyParameters", T::String).v(V44UP),
    f(849, "ParticipationRate", T::Percentage).v(V44UP),
    f(851, "LastLiquidityInd", T::Int)
        .v(V44UP)
        .d(ints(span(0, 4))),
    f(854, "QtyType", T::Int).v(V44UP).d(ints(span(0, 2))),
    f(880, "TrdMatchID", T::String).v(V50),
    f(893, "LastFragment", T::Boolean).v(V44UP),
    f(911, "TotNumReports", T::Int).v(V44UP),
    f(912, "LastRptRequested", T::Boolean).v(V44UP),
    f(925, "NewPassword", T::String).v(V50),
    f(947, "StrikeCurrency", T::Currency).v(V44UP),
    f(965, "SecurityStatus", T::String).v(V50),
    f(969, "MinPriceIncrement", T::Float).v(V44UP),
    f(1028, "ManualOrderIndicator", T::Boolean).v(V50),
    f(1031, "CustOrderHandlingInst", T::MultipleStringValue).v(V50),
    f(1057, "AggressorIndicator", T::Boolean).v(V50),
    f(1089, "MatchIncrement", T::Qty).v(V50),
    f(1090, "MaxPriceLevels", T::Int).v(V50),
    f(1091, "PreTradeAnonymity", T::Boolean).v(V50),
    // In FIX 5.0 SP2's TriggeringInstruction; accepted on 4.4 as an extension (a take-profit
    // limit order has no OrdType of its own there either).
    f(1109, "TriggerPriceDirection", T::Char)
        .v(V44UP)
        .d(chars(b"UD")),
    f(1128, "ApplVerID", T::String).v(V50).d(APPL_VER_ID),
    f(1129, "CstmApplVerID", T::String).v(V50),
    f(1130, "RefApplVerID", T::String).v(V50).d(APPL_VER_ID),
    f(1131, "RefCstmApplVerID", T::String).v(V50),
    f(1137, "DefaultApplVerID", T::String).v(V50).d(APPL_VER_ID),
    f(1138, "DisplayQty", T::Qty).v(V50),
    f(1140, "MaxTradeVol", T::Qty).v(V50),
    f(1156, "ApplExtID", T::Int).v(V50),
    f(1166, "QuoteMsgID", T::String).v(V50),
    // In FIX 5.0 SP2; on 4.4 an extension, as crypto venues' FIX APIs use it.
    f(1385, "ContingencyType", T::Int)
        .v(V44UP)
        .d(ints(span(1, 4))),
    f(1386, "ListRejectReason", T::Int)
        .v(V44UP)
        .d(ints(bit(0) | bit(2) | span(4, 7) | bit(99))),
    f(1400, "EncryptedPasswordMethod", T::Int).v(V50),
    f(1401, "EncryptedPasswordLen", T::DataLength(1402)).v(V50),
    f(1402, "EncryptedPassword", T::Data(1401)).v(V50),
    f(1403, "EncryptedNewPasswordLen", T::DataLength(1404)).v(V50),
    f(1404, "EncryptedNewPassword", T::Data(1403)).v(V50),
    f(1406, "RefApplExtID", T::Int).v(V50),
    f(1407, "DefaultApplExtID", T::Int).v(V50),
    f(1408, "DefaultCstmApplVerID", T::String).v(V50),
    f(1409, "SessionStatus", T::Int).v(V50).d(ints(span(0, 12))),
    f(1410, "DefaultVerIndicator", T::Boolean).v(V50),
];
