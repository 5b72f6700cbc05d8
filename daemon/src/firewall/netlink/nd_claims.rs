//! The neighbour-advert guards as nf_tables rules (see
//! [`TargetClaimRule`] for why nft cannot load them): an `NFT_MSG_DELRULE`
//! naming only the bridge table's `nd-claims` chain (the kernel deletes all
//! its rules: the document's closed placeholder), then one `NFT_MSG_NEWRULE`
//! per rule, appended, all in one batch — so the chain goes from "drop every
//! advert" to the guards in one step. What nft itself sends for the same rule over `typeof` sets
//! (`nft --debug=netlink`, nft 1.0.6):
//!
//! ```text
//! [ payload load 16b @ transport header + 8 => reg 1 ]
//! [ lookup reg 1 set owned-v6 ]
//! [ payload load 16b @ transport header + 8 => reg 1 ]
//! [ payload load 6b @ link header + 6 => reg 2 ]
//! [ lookup reg 1 set owner-of-v6 0x1 ]
//! [ immediate reg 0 goto -> nd-claim-device ]
//! ```
//!
//! The owner set's keys are the IPv6 address then the MAC padded to 8 bytes
//! (24 bytes, as the element deltas write them): registers 1 (16 bytes) and
//! 2. The rule's comment is its name, in the user data nft reads back
//! (libnftnl's `NFTNL_UDATA_RULE_COMMENT`), so the read-back sees it.

use super::{encode_in_batch, nul_terminated, Batch, BatchMessage, NetlinkError};
use super::{NFNL_SUBSYS_NFTABLES, NFPROTO_BRIDGE};
use crate::firewall::nfnl::{MessageWriter, NestTooLarge, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use crate::firewall::render::bridge::{TargetClaimRule, ND_CLAIMS_CHAIN};
use crate::firewall::TABLE;

// linux/netlink.h
const NLM_F_APPEND: u16 = 0x800;
// linux/netfilter/nf_tables.h
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_LL_HEADER: u32 = 0;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_FLAGS: u16 = 5;
const NFT_LOOKUP_F_INV: u32 = 1;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// `NFT_GOTO` is -4.
const NFT_GOTO: u32 = (-4i32) as u32;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
/// libnftnl's `NFTNL_UDATA_RULE_COMMENT`.
const UDATA_RULE_COMMENT: u8 = 0;

/// Where the advert's target address is: ICMPv6 type, code, checksum and
/// flags come first (RFC 4861 section 4.4).
const TARGET_OFFSET: u32 = 8;
const TARGET_LEN: u32 = 16;

/// PURE: the batch that replaces what the bridge table's [`ND_CLAIMS_CHAIN`]
/// holds (the full replace's placeholder) with `rules`.
pub fn encode_nd_claim_rules(rules: &[TargetClaimRule], first_seq: u32) -> Result<Batch, NetlinkError> {
    encode_in_batch(first_seq, |w, seq, messages| {
        *seq = seq.wrapping_add(1);
        let m = w.begin_message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE,
            NLM_F_REQUEST | NLM_F_ACK,
            *seq,
            NFPROTO_BRIDGE,
            0,
        );
        w.attr(NFTA_RULE_TABLE, &nul_terminated(TABLE));
        w.attr(NFTA_RULE_CHAIN, &nul_terminated(ND_CLAIMS_CHAIN));
        w.end_message(m);
        messages.push(BatchMessage {
            seq: *seq,
            what: format!("flush bridge {TABLE} {ND_CLAIMS_CHAIN}"),
        });
        for rule in rules {
            *seq = seq.wrapping_add(1);
            let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
            let m = w.begin_message(
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE,
                flags,
                *seq,
                NFPROTO_BRIDGE,
                0,
            );
            w.attr(NFTA_RULE_TABLE, &nul_terminated(TABLE));
            w.attr(NFTA_RULE_CHAIN, &nul_terminated(ND_CLAIMS_CHAIN));
            let exprs = w.begin_nest(NFTA_RULE_EXPRESSIONS);
            payload(w, NFT_PAYLOAD_TRANSPORT_HEADER, TARGET_OFFSET, TARGET_LEN, NFT_REG_1)?;
            lookup(w, rule.claimed, NFT_REG_1, false)?;
            if let Some(owners) = rule.owners {
                payload(w, NFT_PAYLOAD_TRANSPORT_HEADER, TARGET_OFFSET, TARGET_LEN, NFT_REG_1)?;
                // `ether saddr`: bytes 6 to 12 of the link-layer header.
                payload(w, NFT_PAYLOAD_LL_HEADER, 6, 6, NFT_REG_2)?;
                lookup(w, owners, NFT_REG_1, true)?;
            }
            goto(w, rule.goto)?;
            w.end_nest(exprs)?;
            w.attr(NFTA_RULE_USERDATA, &comment_udata(rule.name));
            w.end_message(m);
            messages.push(BatchMessage {
                seq: *seq,
                what: format!("add rule {} to bridge {TABLE} {ND_CLAIMS_CHAIN}", rule.name),
            });
        }
        Ok(())
    })
}

/// One expression: `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { fill } }`.
fn expression(w: &mut MessageWriter, name: &str, fill: impl FnOnce(&mut MessageWriter)) -> Result<(), NestTooLarge> {
    let elem = w.begin_nest(NFTA_LIST_ELEM);
    w.attr(NFTA_EXPR_NAME, &nul_terminated(name));
    let data = w.begin_nest(NFTA_EXPR_DATA);
    fill(w);
    w.end_nest(data)?;
    w.end_nest(elem)
}

fn payload(w: &mut MessageWriter, base: u32, offset: u32, len: u32, dreg: u32) -> Result<(), NestTooLarge> {
    expression(w, "payload", |w| {
        w.attr(NFTA_PAYLOAD_DREG, &dreg.to_be_bytes());
        w.attr(NFTA_PAYLOAD_BASE, &base.to_be_bytes());
        w.attr(NFTA_PAYLOAD_OFFSET, &offset.to_be_bytes());
        w.attr(NFTA_PAYLOAD_LEN, &len.to_be_bytes());
    })
}

fn lookup(w: &mut MessageWriter, set: &str, sreg: u32, inverted: bool) -> Result<(), NestTooLarge> {
    expression(w, "lookup", |w| {
        w.attr(NFTA_LOOKUP_SET, &nul_terminated(set));
        w.attr(NFTA_LOOKUP_SREG, &sreg.to_be_bytes());
        if inverted {
            w.attr(NFTA_LOOKUP_FLAGS, &NFT_LOOKUP_F_INV.to_be_bytes());
        }
    })
}

fn goto(w: &mut MessageWriter, chain: &str) -> Result<(), NestTooLarge> {
    let mut nested = Ok(());
    expression(w, "immediate", |w| {
        w.attr(NFTA_IMMEDIATE_DREG, &NFT_REG_VERDICT.to_be_bytes());
        let data = w.begin_nest(NFTA_IMMEDIATE_DATA);
        let verdict = w.begin_nest(NFTA_DATA_VERDICT);
        w.attr(NFTA_VERDICT_CODE, &NFT_GOTO.to_be_bytes());
        w.attr(NFTA_VERDICT_CHAIN, &nul_terminated(chain));
        nested = w.end_nest(verdict).and_then(|()| w.end_nest(data));
    })?;
    nested
}

/// libnftnl's user-data TLV list with one comment (NUL included, as nft
/// writes it).
fn comment_udata(name: &str) -> Vec<u8> {
    let text = nul_terminated(name);
    let mut v = Vec::with_capacity(text.len() + 2);
    v.push(UDATA_RULE_COMMENT);
    // Rule names are short constants; a comment is at most 128 bytes.
    v.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(&text);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nfnl::messages;
    use crate::firewall::render::bridge::ND_CLAIM_RULES;

    #[test]
    fn constants_match_libc() {
        assert_eq!(NFT_MSG_NEWRULE, libc::NFT_MSG_NEWRULE as u16);
        assert_eq!(NFT_MSG_DELRULE, libc::NFT_MSG_DELRULE as u16);
        assert_eq!(NFT_GOTO as i32, libc::NFT_GOTO);
        assert_eq!(NLM_F_APPEND, libc::NLM_F_APPEND as u16);
    }

    #[test]
    fn the_placeholder_flushed_and_one_appended_rule_per_guard_in_one_batch() {
        let batch = encode_nd_claim_rules(&ND_CLAIM_RULES, 100).expect("encode");
        assert_eq!(batch.messages.len(), 3);
        let all: Vec<_> = messages(&batch.bytes).collect::<Result<_, _>>().expect("well-formed");
        // BATCH_BEGIN, the flush, two rules, BATCH_END.
        assert_eq!(all.len(), 5);
        let flush = &all[1];
        assert_eq!(flush.ty, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE);
        let text = String::from_utf8_lossy(flush.payload);
        assert!(text.contains("bulkhead\0") && text.contains("nd-claims\0"), "{text:?}");
        // No handle: the whole chain.
        // nfgenmsg, then "bulkhead\0" and "nd-claims\0", each padded to 16.
        assert_eq!(flush.payload.len(), 4 + 16 + 16, "{:?}", flush.payload);
        let msgs = &all[1..];
        let rule = &msgs[2];
        assert_eq!(rule.ty, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE);
        assert_eq!(rule.flags & NLM_F_APPEND, NLM_F_APPEND);
        let body = rule.payload;
        let text = String::from_utf8_lossy(body);
        // The chain, both sets (the owners' lookup inverted), the goto and the comment.
        for needle in [
            "nd-claims\0",
            "owned-v6\0",
            "owner-of-v6\0",
            "nd-claim-device\0",
            "claims-device\0",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {body:?}");
        }
        assert!(String::from_utf8_lossy(msgs[1].payload).contains("router-v6\0"));
        assert!(!String::from_utf8_lossy(msgs[1].payload).contains("owner-of-v6"));
        // The owners' lookup is inverted (NFTA_LOOKUP_FLAGS = NFT_LOOKUP_F_INV),
        // the router's is not; the target is 16 bytes at offset 8 of the
        // transport header, the MAC 6 at offset 6 of the link layer.
        let inverted = [8u8, 0, NFTA_LOOKUP_FLAGS as u8, 0, 0, 0, 0, 1];
        let has = |body: &[u8], needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(has(body, &inverted));
        assert!(!has(msgs[1].payload, &inverted));
        let attr = |ty: u16, v: u32| {
            let mut a = vec![8u8, 0];
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(&v.to_be_bytes());
            a
        };
        let target = [
            attr(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER),
            attr(NFTA_PAYLOAD_OFFSET, 8),
            attr(NFTA_PAYLOAD_LEN, 16),
        ]
        .concat();
        let source = [
            attr(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_LL_HEADER),
            attr(NFTA_PAYLOAD_OFFSET, 6),
            attr(NFTA_PAYLOAD_LEN, 6),
        ]
        .concat();
        assert!(has(body, &target) && has(body, &source));
        assert!(has(msgs[1].payload, &target) && !has(msgs[1].payload, &source));
    }
}
