//! The standard header, the messages and their components and repeating groups, for all three
//! versions at once: every item says in which versions it exists and in which it is required.

use super::{ALL, V42, V44, V44UP, V50};

/// One entry of a message, component or group definition.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item {
    /// A field.
    Field {
        tag: u32,
        /// Versions where the field belongs here.
        present: u8,
        /// Versions where it is required (a subset of `present`).
        required: u8,
    },
    /// A repeating group, announced by its NumInGroup field.
    Group {
        group: &'static Group,
        present: u8,
        required: u8,
    },
    /// A component: its items are inlined; they are required only where the component is.
    Component {
        items: &'static [Item],
        present: u8,
        required: u8,
    },
}

/// A repeating group: the NumInGroup field and the fields of one entry, in their required order.
/// The first item is the delimiter that starts every entry. Entries hold fields and nested groups.
#[derive(Debug)]
pub(crate) struct Group {
    pub count_tag: u32,
    /// Fields after the delimiter may come in any order (each at most once), as venues accept
    /// them in a NewOrderList's orders.
    pub any_order: bool,
    pub items: &'static [Item],
}

impl Group {
    /// The position of `tag` within an entry for version `v`.
    #[inline]
    pub fn position(&self, tag: u32, v: u8) -> Option<usize> {
        self.items.iter().position(|it| match *it {
            Item::Field {
                tag: t, present, ..
            } => t == tag && present & v != 0,
            Item::Group { group, present, .. } => group.count_tag == tag && present & v != 0,
            Item::Component { .. } => false,
        })
    }
}

/// A message type.
#[derive(Debug)]
pub(crate) struct MsgSpec {
    pub msg_type: &'static [u8],
    pub name: &'static str,
    /// Versions that define the message.
    pub versions: u8,
    pub items: &'static [Item],
}

const fn opt(tag: u32) -> Item {
    Item::Field {
        tag,
        present: ALL,
        required: 0,
    }
}

const fn req(tag: u32) -> Item {
    Item::Field {
        tag,
        present: ALL,
        required: ALL,
    }
}

const fn grp(group: &'static Group) -> Item {
    Item::Group {
        group,
        present: ALL,
        required: 0,
    }
}

const fn comp(items: &'static [Item]) -> Item {
    Item::Component {
        items,
        present: ALL,
        required: ALL,
    }
}

impl Item {
    /// Limits the item to some versions.
    const fn only(self, v: u8) -> Self {
        match self {
            Item::Field {
                tag,
                present,
                required,
            } => Item::Field {
                tag,
                present: present & v,
                required: required & v,
            },
            Item::Group {
                group,
                present,
                required,
            } => Item::Group {
                group,
                present: present & v,
                required: required & v,
            },
            Item::Component {
                items,
                present,
                required,
            } => Item::Component {
                items,
                present: present & v,
                required: required & v,
            },
        }
    }

    /// Makes the item required in (only) the versions `v`.
    const fn req_in(self, v: u8) -> Self {
        match self {
            Item::Field { tag, present, .. } => Item::Field {
                tag,
                present,
                required: present & v,
            },
            Item::Group { group, present, .. } => Item::Group {
                group,
                present,
                required: present & v,
            },
            Item::Component { items, present, .. } => Item::Component {
                items,
                present,
                required: present & v,
            },
        }
    }
}

// ---- header and trailer ------------------------------------------------------------------

const NO_HOPS: Group = Group {
    count_tag: 627,
    any_order: false,
    items: &[opt(628), opt(629), opt(630)],
};

/// StandardHeader, in the specification's order (only 8, 9, 35 are positional).
pub(crate) const HEADER: &[Item] = &[
    req(8),
    req(9),
    req(35),
    opt(1128).only(V50),
    opt(1156).only(V50),
    opt(1129).only(V50),
    req(49),
    req(56),
    opt(115),
    opt(128),
    opt(90),
    opt(91),
    req(34),
    opt(50),
    opt(142),
    opt(57),
    opt(143),
    opt(116),
    opt(144),
    opt(129),
    opt(145),
    opt(43),
    opt(97),
    req(52),
    opt(122),
    opt(212),
    opt(213),
    opt(347),
    opt(369),
    opt(370).only(V42 | V44),
    grp(&NO_HOPS).only(V44UP),
];

// ---- components --------------------------------------------------------------------------

const TEXT: &[Item] = &[opt(58), opt(354), opt(355)];

/// The Instrument block. Where the component is required, Symbol(55) is required with it, as
/// FIX 4.2 requires Symbol on these messages and 4.4 / 5.0 SP2 require the component.
const INSTRUMENT: &[Item] = &[
    req(55),
    opt(65),
    opt(48),
    opt(22),
    opt(460).only(V44UP),
    opt(461).only(V44UP),
    opt(167),
    opt(762).only(V44UP),
    opt(200),
    opt(541).only(V44UP),
    opt(205).only(V42),
    // Deprecated in 4.3/4.4 in favour of CFICode, but what options venues receive.
    opt(201),
    opt(202),
    opt(947).only(V44UP),
    opt(206),
    opt(231),
    opt(223),
    opt(207),
    opt(106),
    opt(348),
    opt(349),
    opt(107),
    opt(350),
    opt(351),
];

const ORDER_QTY_DATA: &[Item] = &[opt(38), opt(152)];

const COMMISSION_DATA: &[Item] = &[opt(12), opt(13), opt(479).only(V44UP), opt(497).only(V44UP)];

const PEG_INSTRUCTIONS: &[Item] = &[
    opt(211),
    opt(835).only(V44UP),
    opt(836).only(V44UP),
    opt(837).only(V44UP),
    opt(838).only(V44UP),
    opt(840).only(V44UP),
];

const DISCRETION_INSTRUCTIONS: &[Item] = &[opt(388), opt(389)];

const NO_PARTY_SUB_IDS: Group = Group {
    count_tag: 802,
    any_order: false,
    items: &[opt(523), opt(803)],
};

/// Parties (FIX 4.4, 5.0 SP2).
/// The PositionQty block's group.
const NO_POSITIONS: Group = Group {
    count_tag: 702,
    any_order: false,
    items: &[opt(703), opt(704), opt(705), opt(706), grp(&NO_PARTY_IDS)],
};

pub(crate) const NO_PARTY_IDS: Group = Group {
    count_tag: 453,
    any_order: false,
    items: &[opt(448), opt(447), opt(452), grp(&NO_PARTY_SUB_IDS)],
};

const NO_ALLOCS: Group = Group {
    count_tag: 78,
    any_order: false,
    items: &[
        opt(79),
        opt(661).only(V44UP),
        opt(736).only(V44UP),
        opt(467).only(V44UP),
        opt(80),
    ],
};

const NO_TRADING_SESSIONS: Group = Group {
    count_tag: 386,
    any_order: false,
    items: &[opt(336), opt(625).only(V44UP)],
};

const NO_CONTRA_BROKERS: Group = Group {
    count_tag: 382,
    any_order: false,
    items: &[opt(375), opt(337), opt(437), opt(438), opt(655).only(V44UP)],
};

const NO_AFFECTED_ORDERS: Group = Group {
    count_tag: 534,
    any_order: false,
    items: &[opt(41), opt(535), opt(536)],
};

const NO_UNDERLYINGS: Group = Group {
    count_tag: 711,
    any_order: false,
    items: &[opt(311)],
};

/// One instrument of a SecurityList: the Instrument block's fields Portcullis lists (a
/// component cannot be a group's delimiter, so they are spelled out), then the trading rules.
const NO_RELATED_SYM: Group = Group {
    count_tag: 146,
    any_order: false,
    items: &[
        opt(55),
        opt(48),
        opt(22),
        opt(167),
        opt(762),
        opt(200),
        opt(541),
        opt(201),
        opt(202),
        opt(231),
        opt(969),
        opt(965).only(V50),
        opt(107),
        grp(&NO_UNDERLYINGS),
        opt(15),
        opt(561),
        opt(562),
        opt(1140).only(V50),
    ],
};

/// One quote of a MassQuote (i), and its acknowledgement in a MassQuoteAcknowledgement (b)
/// (QuoteEntryRejectReason(368) only there): QuoteEntryID, the Instrument block's fields
/// spelled out (a component cannot be a group's delimiter), then the two sides.
const NO_QUOTE_ENTRIES: Group = Group {
    count_tag: 295,
    any_order: false,
    items: &[
        opt(299),
        opt(55),
        opt(65),
        opt(48),
        opt(22),
        opt(167),
        opt(762),
        opt(200),
        opt(541),
        opt(201),
        opt(202),
        opt(231),
        opt(107),
        opt(132),
        opt(133),
        opt(134),
        opt(135),
        opt(62),
        opt(60),
        opt(336),
        opt(625),
        opt(40),
        opt(15),
        opt(368),
    ],
};

/// A set of quotes of a MassQuote (i) or its acknowledgement (b).
const NO_QUOTE_SETS: Group = Group {
    count_tag: 296,
    any_order: false,
    items: &[
        opt(302),
        opt(311),
        opt(367),
        opt(304),
        opt(893),
        grp(&NO_QUOTE_ENTRIES),
    ],
};

/// The instruments a QuoteCancel (Z) names.
const NO_QUOTE_CANCEL_ENTRIES: Group = Group {
    count_tag: 295,
    any_order: false,
    items: &[
        opt(55),
        opt(65),
        opt(48),
        opt(22),
        opt(167),
        opt(762),
        opt(200),
        opt(541),
        opt(201),
        opt(202),
        opt(231),
        opt(107),
        grp(&NO_UNDERLYINGS),
    ],
};

const NO_MSG_TYPES: Group = Group {
    count_tag: 384,
    any_order: false,
    items: &[
        opt(372),
        opt(385),
        opt(1130).only(V50),
        opt(1406).only(V50),
        opt(1131).only(V50),
        opt(1410).only(V50),
    ],
};

// ---- session messages --------------------------------------------------------------------

const HEARTBEAT: &[Item] = &[opt(112)];
const TEST_REQUEST: &[Item] = &[req(112)];
const RESEND_REQUEST: &[Item] = &[req(7), req(16)];
const REJECT: &[Item] = &[
    req(45),
    opt(371),
    opt(372),
    opt(1130).only(V50),
    opt(1406).only(V50),
    opt(1131).only(V50),
    opt(373),
    comp(TEXT),
];
const SEQUENCE_RESET: &[Item] = &[opt(123), req(36)];
const LOGOUT: &[Item] = &[opt(1409).only(V50), comp(TEXT)];
const LOGON: &[Item] = &[
    req(98),
    req(108),
    opt(95),
    opt(96),
    opt(141),
    opt(789).only(V44UP),
    opt(383),
    grp(&NO_MSG_TYPES),
    opt(464).only(V44UP),
    // On 4.2 an extension, as venues on 4.2 do (the logon signature needs them).
    opt(553),
    opt(554),
    opt(925).only(V50),
    opt(1400).only(V50),
    opt(1401).only(V50),
    opt(1402).only(V50),
    opt(1403).only(V50),
    opt(1404).only(V50),
    opt(1409).only(V50),
    req(1137).only(V50),
    opt(1407).only(V50),
    opt(1408).only(V50),
    comp(TEXT).only(V50),
];

// ---- order entry -------------------------------------------------------------------------

const NEW_ORDER_SINGLE: &[Item] = &[
    req(11),
    opt(526).only(V44UP),
    opt(583).only(V44UP),
    grp(&NO_PARTY_IDS).only(V44UP),
    opt(229).only(V44UP),
    opt(75).only(V44UP),
    opt(109).only(V42),
    opt(76).only(V42),
    opt(1),
    opt(660).only(V44UP),
    opt(581).only(V44UP),
    opt(589).only(V44UP),
    opt(590).only(V44UP),
    opt(591).only(V44UP),
    opt(70).only(V44UP),
    grp(&NO_ALLOCS),
    opt(63),
    opt(64),
    opt(544).only(V44UP),
    opt(635).only(V44UP),
    opt(21).req_in(V42),
    opt(18),
    opt(110),
    opt(111),
    opt(1089).only(V50),
    opt(1090).only(V50),
    opt(1138).only(V50),
    opt(100),
    grp(&NO_TRADING_SESSIONS),
    opt(81),
    comp(INSTRUMENT),
    opt(140),
    req(54),
    opt(114),
    req(60),
    opt(854).only(V44UP),
    comp(ORDER_QTY_DATA),
    req(40),
    opt(423).only(V44UP),
    opt(44),
    opt(99),
    opt(1109).only(V44UP),
    opt(15),
    opt(376),
    opt(377),
    opt(23),
    opt(117),
    opt(59),
    opt(168),
    opt(432),
    opt(126),
    opt(427),
    comp(COMMISSION_DATA),
    opt(528).only(V44UP),
    opt(529).only(V44UP),
    opt(582).only(V44UP),
    opt(47).only(V42),
    opt(121),
    opt(120),
    opt(775).only(V44UP),
    comp(TEXT),
    opt(193),
    opt(192),
    opt(640).only(V44UP),
    opt(77),
    opt(203),
    opt(204).only(V42),
    opt(210),
    comp(PEG_INSTRUCTIONS),
    comp(DISCRETION_INSTRUCTIONS),
    opt(847).only(V44UP),
    opt(848).only(V44UP),
    opt(849).only(V44UP),
    opt(494).only(V44UP),
    opt(439).only(V42),
    opt(440).only(V42),
    opt(1028).only(V50),
    opt(1091).only(V50),
    opt(1031).only(V50),
];

const ORDER_CANCEL_REQUEST: &[Item] = &[
    // OrigClOrdID became optional in 5.0 (OrderID may identify the order); on 4.4 too, as a
    // list may be named instead (ListID(66) or OrigClListID(25015)), and the application
    // answers a cancel naming nothing with an OrderCancelReject that says so.
    opt(41).req_in(V42),
    opt(37),
    req(11),
    opt(526).only(V44UP),
    opt(583).only(V44UP),
    opt(66),
    opt(586).only(V44UP),
    opt(1),
    opt(660).only(V44UP),
    opt(581).only(V44UP),
    opt(109).only(V42),
    opt(76).only(V42),
    grp(&NO_PARTY_IDS).only(V44UP),
    comp(INSTRUMENT),
    req(54),
    req(60),
    comp(ORDER_QTY_DATA),
    opt(376),
    comp(TEXT),
];

const ORDER_CANCEL_REPLACE_REQUEST: &[Item] = &[
    opt(37),
    grp(&NO_PARTY_IDS).only(V44UP),
    opt(229).only(V44UP),
    opt(75).only(V44UP),
    opt(41).req_in(V42 | V44),
    req(11),
    opt(526).only(V44UP),
    opt(583).only(V44UP),
    opt(66),
    opt(586).only(V44UP),
    opt(1),
    opt(660).only(V44UP),
    opt(581).only(V44UP),
    opt(109).only(V42),
    opt(76).only(V42),
    opt(589).only(V44UP),
    opt(590).only(V44UP),
    opt(591).only(V44UP),
    opt(70).only(V44UP),
    grp(&NO_ALLOCS),
    opt(63),
    opt(64),
    opt(544).only(V44UP),
    opt(635).only(V44UP),
    opt(21).req_in(V42),
    opt(18),
    opt(110),
    opt(111),
    opt(1089).only(V50),
    opt(1090).only(V50),
    opt(1138).only(V50),
    opt(100),
    grp(&NO_TRADING_SESSIONS),
    comp(INSTRUMENT),
    req(54),
    req(60),
    opt(854).only(V44UP),
    comp(ORDER_QTY_DATA),
    req(40),
    opt(423).only(V44UP),
    opt(44),
    opt(99),
    comp(PEG_INSTRUCTIONS),
    comp(DISCRETION_INSTRUCTIONS),
    opt(847).only(V44UP),
    opt(848).only(V44UP),
    opt(849).only(V44UP),
    opt(376),
    opt(377),
    opt(15),
    opt(59),
    opt(168),
    opt(432),
    opt(126),
    opt(427),
    comp(COMMISSION_DATA),
    opt(528).only(V44UP),
    opt(529).only(V44UP),
    opt(582).only(V44UP),
    opt(47).only(V42),
    opt(121),
    opt(120),
    opt(775).only(V44UP),
    comp(TEXT),
    opt(193),
    opt(192),
    opt(640).only(V44UP),
    opt(77),
    opt(203),
    opt(204).only(V42),
    opt(210),
    opt(114),
    opt(494).only(V44UP),
    opt(439).only(V42),
    opt(440).only(V42),
    opt(1028).only(V50),
];

const ORDER_STATUS_REQUEST: &[Item] = &[
    opt(37),
    opt(11).req_in(V42 | V44),
    opt(526).only(V44UP),
    opt(583).only(V44UP),
    grp(&NO_PARTY_IDS).only(V44UP),
    opt(790).only(V44UP),
    opt(109).only(V42),
    opt(76).only(V42),
    opt(1),
    opt(660).only(V44UP),
    comp(INSTRUMENT),
    req(54),
];

const ORDER_MASS_CANCEL_REQUEST: &[Item] = &[
    req(11),
    opt(526),
    req(530),
    opt(336),
    opt(625),
    grp(&NO_PARTY_IDS).only(V50),
    opt(1).only(V50),
    comp(INSTRUMENT).req_in(0),
    opt(54),
    req(60),
    comp(TEXT),
];

const ORDER_MASS_STATUS_REQUEST: &[Item] = &[
    req(584),
    req(585),
    grp(&NO_PARTY_IDS),
    opt(1),
    opt(660),
    opt(336),
    opt(625),
    comp(INSTRUMENT).req_in(0),
    opt(54),
];

const ORDER_MASS_CANCEL_REPORT: &[Item] = &[
    opt(11),
    opt(526),
    req(37),
    opt(198),
    req(530),
    req(531),
    opt(532),
    opt(533),
    grp(&NO_AFFECTED_ORDERS),
    opt(336),
    opt(625),
    grp(&NO_PARTY_IDS).only(V50),
    opt(1).only(V50),
    comp(INSTRUMENT).req_in(0),
    opt(54),
    opt(60),
    comp(TEXT),
];

const EXECUTION_REPORT: &[Item] = &[
    req(37),
    opt(198),
    opt(526).only(V44UP),
    opt(527).only(V44UP),
    opt(11),
    opt(41),
    opt(583).only(V44UP),
    opt(790).only(V44UP),
    opt(584).only(V44UP),
    opt(911).only(V44UP),
    opt(912).only(V44UP),
    grp(&NO_PARTY_IDS).only(V44UP),
    opt(229).only(V44UP),
    opt(109).only(V42),
    opt(76).only(V42),
    grp(&NO_CONTRA_BROKERS),
    opt(66),
    opt(880).only(V50),
    req(17),
    opt(19),
    req(20).only(V42),
    req(150),
    req(39),
    opt(636).only(V44UP),
    opt(103),
    opt(378),
    opt(1),
    opt(660).only(V44UP),
    opt(581).only(V44UP),
    opt(63),
    opt(64),
    opt(544).only(V44UP),
    comp(INSTRUMENT),
    req(54),
    opt(854).only(V44UP),
    comp(ORDER_QTY_DATA),
    opt(40),
    opt(423).only(V44UP),
    opt(44),
    opt(99),
    opt(1109).only(V44UP),
    comp(PEG_INSTRUCTIONS),
    comp(DISCRETION_INSTRUCTIONS),
    opt(839).only(V44UP),
    opt(845).only(V44UP),
    opt(15),
    opt(376),
    opt(377),
    opt(59),
    opt(168),
    opt(432),
    opt(126),
    opt(18),
    opt(1057).only(V50),
    opt(528).only(V44UP),
    opt(529).only(V44UP),
    opt(582).only(V44UP),
    opt(47).only(V42),
    opt(32),
    opt(31),
    opt(669).only(V44UP),
    opt(194),
    opt(195),
    opt(30),
    opt(336),
    opt(625).only(V44UP),
    opt(29),
    req(151),
    req(14),
    // AvgPx became optional in 5.0.
    opt(6).req_in(V42 | V44),
    opt(424),
    opt(425),
    opt(426),
    opt(427),
    opt(75),
    opt(60),
    opt(113),
    comp(COMMISSION_DATA),
    opt(381),
    opt(118),
    opt(119),
    opt(120),
    opt(155),
    opt(156),
    opt(21),
    opt(110),
    opt(111),
    opt(1138).only(V50),
    opt(77),
    opt(210),
    opt(775).only(V44UP),
    comp(TEXT),
    opt(193),
    opt(192),
    opt(439).only(V42),
    opt(440).only(V42),
    opt(442),
    opt(851).only(V44UP),
    opt(797).only(V44UP),
    opt(1028).only(V50),
];

const ORDER_CANCEL_REJECT: &[Item] = &[
    req(37),
    opt(198),
    opt(526).only(V44UP),
    req(11),
    opt(583).only(V44UP),
    opt(41).req_in(V42 | V44),
    req(39),
    opt(636).only(V44UP),
    opt(586).only(V44UP),
    opt(66),
    opt(109).only(V42),
    opt(76).only(V42),
    opt(1),
    opt(660).only(V44UP),
    opt(581).only(V44UP),
    opt(229).only(V44UP),
    opt(75).only(V44UP),
    opt(60),
    req(434),
    opt(102),
    comp(TEXT),
];

const SECURITY_LIST_REQUEST: &[Item] = &[
    req(320),
    req(559),
    comp(INSTRUMENT).req_in(0),
    opt(15),
    comp(TEXT),
    opt(336),
    opt(625),
    opt(263),
];

const SECURITY_LIST: &[Item] = &[
    req(320),
    req(322),
    req(560),
    opt(393),
    opt(893),
    grp(&NO_RELATED_SYM),
    comp(TEXT),
];

/// RequestForPositions: what 4.4 requires beyond PosReqID and PosReqType (Parties, Account,
/// AccountType, ClearingBusinessDate, TransactTime) is accepted but optional, as venues'
/// rules of engagement have it; the session's account is the default.
const REQUEST_FOR_POSITIONS: &[Item] = &[
    req(710),
    req(724),
    opt(573),
    opt(263),
    grp(&NO_PARTY_IDS),
    opt(1),
    opt(660),
    opt(581),
    comp(INSTRUMENT).req_in(0),
    opt(15),
    opt(715),
    opt(716),
    opt(717),
    opt(336),
    opt(625),
    opt(60),
    opt(725),
    opt(726),
    comp(TEXT),
];

const REQUEST_FOR_POSITIONS_ACK: &[Item] = &[
    req(721),
    opt(710),
    opt(727),
    opt(325),
    req(728),
    req(729),
    grp(&NO_PARTY_IDS),
    opt(1).req_in(V44),
    opt(660),
    opt(581).req_in(V44),
    comp(INSTRUMENT).req_in(0),
    opt(15),
    opt(725),
    opt(726),
    comp(TEXT),
];

const POSITION_REPORT: &[Item] = &[
    req(721),
    opt(710),
    opt(724),
    opt(263),
    opt(727),
    opt(325),
    req(728),
    opt(715).req_in(V44),
    opt(716),
    opt(717),
    grp(&NO_PARTY_IDS),
    opt(1).req_in(V44),
    opt(660),
    opt(581).req_in(V44),
    comp(INSTRUMENT).req_in(0),
    opt(15),
    opt(730).req_in(V44),
    opt(731).req_in(V44),
    opt(734).req_in(V44),
    grp(&NO_POSITIONS),
    comp(TEXT),
];

/// One order of a NewOrderList (E): a NewOrderSingle's fields that a list's orders use. After
/// ClOrdID the fields may come in any order, as venues with FIX order lists accept them.
const NO_ORDERS: Group = Group {
    count_tag: 73,
    any_order: true,
    items: &[
        req(11),
        opt(67),
        opt(1),
        opt(18),
        opt(111),
        opt(1138).only(V50),
        req(55),
        opt(65),
        opt(48),
        opt(22),
        opt(167),
        opt(200),
        opt(201),
        opt(202),
        req(54),
        opt(60),
        opt(38),
        opt(152),
        req(40),
        opt(44),
        opt(99),
        opt(1109),
        opt(211),
        opt(59),
        opt(432),
        opt(126),
        opt(58),
    ],
};

/// NewOrderList (E): an order list with a contingency (FIX 5.0 SP2 ContingencyType(1385); on
/// 4.4 an extension). ListID(66), BidType(394) and TotNoOrders(68), which the standard
/// requires for program trading, are optional: a list's client id may come in ClListID(25014).
const NEW_ORDER_LIST: &[Item] = &[
    opt(66),
    opt(1385),
    opt(394),
    opt(68),
    grp(&NO_ORDERS).req_in(ALL),
    comp(TEXT),
];

/// The entry types a MarketDataRequest (V) asks for.
const NO_MD_ENTRY_TYPES: Group = Group {
    count_tag: 267,
    any_order: false,
    items: &[req(269)],
};

/// The instruments of a MarketDataRequest (V): the Instrument block's fields Portcullis reads,
/// spelled out (a component cannot be a group's delimiter).
const MD_RELATED_SYM: Group = Group {
    count_tag: 146,
    any_order: false,
    items: &[
        req(55),
        opt(65),
        opt(48),
        opt(22),
        opt(167),
        opt(200),
        opt(201),
        opt(202),
    ],
};

/// MarketDataRequest (V): snapshots of a book's levels.
const MARKET_DATA_REQUEST: &[Item] = &[
    req(262),
    req(263),
    req(264),
    opt(265),
    opt(266),
    grp(&NO_MD_ENTRY_TYPES).req_in(ALL),
    grp(&MD_RELATED_SYM).req_in(ALL),
];

/// One level of a MarketDataSnapshotFullRefresh (W).
const NO_MD_ENTRIES: Group = Group {
    count_tag: 268,
    any_order: false,
    items: &[req(269), opt(270), opt(271), opt(290)],
};

/// MarketDataSnapshotFullRefresh (W): a book's levels.
const MARKET_DATA_SNAPSHOT: &[Item] = &[
    opt(262),
    comp(INSTRUMENT).req_in(ALL),
    grp(&NO_MD_ENTRIES).req_in(ALL),
];

/// MarketDataRequestReject (Y).
const MARKET_DATA_REQUEST_REJECT: &[Item] = &[req(262), opt(281), comp(TEXT)];

/// ListCancelRequest (K): cancels the working orders of a list (by the ListID the server
/// gave it).
const LIST_CANCEL_REQUEST: &[Item] = &[req(66), req(60), opt(229), opt(75), comp(TEXT)];

/// ListStatusRequest (M): the state of a list.
const LIST_STATUS_REQUEST: &[Item] = &[req(66), comp(TEXT)];

/// One order of a ListStatus (N): its state, with its OrderID and Symbol (extensions, as
/// venues send them).
const NO_ORDERS_STATUS: Group = Group {
    count_tag: 73,
    any_order: false,
    items: &[
        req(11),
        opt(37),
        opt(55),
        req(14),
        req(39),
        req(151),
        req(84),
        req(6),
        opt(103),
        opt(58),
    ],
};

/// ListStatus (N): the state of an order list. ContingencyType(1385), Symbol(55) and
/// ListRejectReason(1386) are there on 4.4 too, Text(58) beside ListStatusText(444).
const LIST_STATUS: &[Item] = &[
    req(66),
    req(429),
    req(82),
    req(431),
    opt(1386),
    req(83),
    opt(1385),
    opt(55),
    opt(60),
    req(68),
    grp(&NO_ORDERS_STATUS).req_in(ALL),
    comp(TEXT),
];

const TRADING_SESSION_STATUS_REQUEST: &[Item] = &[
    req(335),
    opt(336),
    opt(625).only(V44UP),
    opt(338),
    opt(339),
    req(263),
];

const TRADING_SESSION_STATUS: &[Item] = &[
    opt(335),
    req(336),
    opt(625).only(V44UP),
    opt(338),
    opt(339),
    opt(325),
    req(340),
    opt(567).only(V44UP),
    comp(TEXT),
];

const SECURITY_STATUS_REQUEST: &[Item] = &[
    req(324),
    comp(INSTRUMENT),
    opt(15),
    req(263),
    opt(336),
    opt(625).only(V44UP),
];

const SECURITY_STATUS: &[Item] = &[
    opt(324),
    comp(INSTRUMENT),
    opt(15),
    opt(336),
    opt(625).only(V44UP),
    opt(325),
    opt(326),
    opt(60),
    comp(TEXT),
];

const MASS_QUOTE: &[Item] = &[
    opt(131),
    req(117),
    opt(537),
    opt(301),
    grp(&NO_PARTY_IDS),
    opt(1),
    opt(660),
    opt(581),
    opt(293),
    opt(294),
    grp(&NO_QUOTE_SETS).req_in(ALL),
];

const MASS_QUOTE_ACKNOWLEDGEMENT: &[Item] = &[
    opt(131),
    opt(117),
    req(297),
    opt(300),
    opt(301),
    opt(537),
    grp(&NO_PARTY_IDS),
    opt(1),
    opt(660),
    opt(581),
    comp(TEXT),
    grp(&NO_QUOTE_SETS),
];

const QUOTE_CANCEL: &[Item] = &[
    opt(131),
    opt(117).req_in(V44),
    opt(1166).only(V50),
    req(298),
    opt(301),
    grp(&NO_PARTY_IDS),
    opt(1),
    opt(660),
    opt(581),
    opt(336),
    opt(625),
    grp(&NO_QUOTE_CANCEL_ENTRIES),
];

const BUSINESS_MESSAGE_REJECT: &[Item] = &[
    opt(45),
    req(372),
    opt(1130).only(V50),
    opt(1406).only(V50),
    opt(1131).only(V50),
    opt(379),
    req(380),
    comp(TEXT),
];

const fn msg(
    msg_type: &'static [u8],
    name: &'static str,
    versions: u8,
    items: &'static [Item],
) -> MsgSpec {
    MsgSpec {
        msg_type,
        name,
        versions,
        items,
    }
}

/// Every message, in the order of [`msg_index`].
pub(crate) const MSGS: &[MsgSpec] = &[
    msg(b"0", "Heartbeat", ALL, HEARTBEAT),
    msg(b"1", "TestRequest", ALL, TEST_REQUEST),
    msg(b"2", "ResendRequest", ALL, RESEND_REQUEST),
    msg(b"3", "Reject", ALL, REJECT),
    msg(b"4", "SequenceReset", ALL, SEQUENCE_RESET),
    msg(b"5", "Logout", ALL, LOGOUT),
    msg(b"A", "Logon", ALL, LOGON),
    msg(b"D", "NewOrderSingle", ALL, NEW_ORDER_SINGLE),
    msg(b"F", "OrderCancelRequest", ALL, ORDER_CANCEL_REQUEST),
    msg(
        b"G",
        "OrderCancelReplaceRequest",
        ALL,
        ORDER_CANCEL_REPLACE_REQUEST,
    ),
    msg(b"H", "OrderStatusRequest", ALL, ORDER_STATUS_REQUEST),
    msg(
        b"q",
        "OrderMassCancelRequest",
        V44UP,
        ORDER_MASS_CANCEL_REQUEST,
    ),
    msg(b"8", "ExecutionReport", ALL, EXECUTION_REPORT),
    msg(b"9", "OrderCancelReject", ALL, ORDER_CANCEL_REJECT),
    msg(
        b"r",
        "OrderMassCancelReport",
        V44UP,
        ORDER_MASS_CANCEL_REPORT,
    ),
    msg(b"j", "BusinessMessageReject", ALL, BUSINESS_MESSAGE_REJECT),
    msg(
        b"AF",
        "OrderMassStatusRequest",
        V44UP,
        ORDER_MASS_STATUS_REQUEST,
    ),
    msg(b"x", "SecurityListRequest", V44UP, SECURITY_LIST_REQUEST),
    msg(b"y", "SecurityList", V44UP, SECURITY_LIST),
    msg(b"i", "MassQuote", V44UP, MASS_QUOTE),
    msg(
        b"b",
        "MassQuoteAcknowledgement",
        V44UP,
        MASS_QUOTE_ACKNOWLEDGEMENT,
    ),
    msg(b"Z", "QuoteCancel", V44UP, QUOTE_CANCEL),
    msg(b"e", "SecurityStatusRequest", ALL, SECURITY_STATUS_REQUEST),
    msg(b"f", "SecurityStatus", ALL, SECURITY_STATUS),
    msg(b"AN", "RequestForPositions", V44UP, REQUEST_FOR_POSITIONS),
    msg(
        b"AO",
        "RequestForPositionsAck",
        V44UP,
        REQUEST_FOR_POSITIONS_ACK,
    ),
    msg(b"AP", "PositionReport", V44UP, POSITION_REPORT),
    msg(
        b"g",
        "TradingSessionStatusRequest",
        ALL,
        TRADING_SESSION_STATUS_REQUEST,
    ),
    msg(b"h", "TradingSessionStatus", ALL, TRADING_SESSION_STATUS),
    msg(b"E", "NewOrderList", V44UP, NEW_ORDER_LIST),
    msg(b"N", "ListStatus", V44UP, LIST_STATUS),
    msg(b"K", "ListCancelRequest", V44UP, LIST_CANCEL_REQUEST),
    msg(b"M", "ListStatusRequest", V44UP, LIST_STATUS_REQUEST),
    msg(b"V", "MarketDataRequest", ALL, MARKET_DATA_REQUEST),
    msg(
        b"W",
        "MarketDataSnapshotFullRefresh",
        ALL,
        MARKET_DATA_SNAPSHOT,
    ),
    msg(
        b"Y",
        "MarketDataRequestReject",
        ALL,
        MARKET_DATA_REQUEST_REJECT,
    ),
];

/// Number of message types in [`MSGS`].
pub(crate) const N_MSGS: usize = 36;

/// The index in [`MSGS`] of a MsgType.
#[inline]
pub(crate) fn msg_index(msg_type: &[u8]) -> Option<usize> {
    let &[c] = msg_type else {
        return match msg_type {
            b"AF" => Some(16),
            b"AN" => Some(24),
            b"AO" => Some(25),
            b"AP" => Some(26),
            _ => None,
        };
    };
    Some(match c {
        b'0' => 0,
        b'1' => 1,
        b'2' => 2,
        b'3' => 3,
        b'4' => 4,
        b'5' => 5,
        b'A' => 6,
        b'D' => 7,
        b'F' => 8,
        b'G' => 9,
        b'H' => 10,
        b'q' => 11,
        b'8' => 12,
        b'9' => 13,
        b'r' => 14,
        b'j' => 15,
        b'x' => 17,
        b'y' => 18,
        b'i' => 19,
        b'b' => 20,
        b'Z' => 21,
        b'e' => 22,
        b'f' => 23,
        b'g' => 27,
        b'h' => 28,
        b'E' => 29,
        b'N' => 30,
        b'K' => 31,
        b'M' => 32,
        b'V' => 33,
        b'W' => 34,
        b'Y' => 35,
        _ => return None,
    })
}

/// True if `msg_type` is a MsgType of the version's specification (whether or not Portcullis
/// supports it), so that an unsupported but valid type gets a BusinessMessageReject rather than
/// a session Reject.
pub(crate) fn in_spec(msg_type: &[u8], v: u8) -> bool {
    match *msg_type {
        [c] => {
            matches!(c, b'0'..=b'9' | b'A'..=b'H' | b'J'..=b'N' | b'P'..=b'T' | b'V'..=b'Z' | b'a'..=b'm')
                || (v & V44UP != 0 && matches!(c, b'n'..=b'z'))
        }
        [a, b] if v & V44 != 0 => {
            (a == b'A' && b.is_ascii_uppercase()) || (a == b'B' && (b'A'..=b'H').contains(&b))
        }
        // 5.0 SP2 and its extension packs.
        [a, b] if v & V50 != 0 => matches!(a, b'A' | b'B' | b'C') && b.is_ascii_uppercase(),
        _ => false,
    }
}
