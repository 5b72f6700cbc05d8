//! Tiny constructors over the `nftables` crate's JSON types, so rules read like
//! nft rules. Every value here comes from validated config or typed addresses; no
//! text from the network is ever spliced into an expression.

use std::borrow::Cow;

use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, SetItem, CT};
use nftables::stmt::{JumpTarget, Match, Operator, Statement};

pub(crate) fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

pub(crate) fn set_ref(name: &str) -> Expression<'static> {
    s(format!("@{name}"))
}

pub(crate) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: Cow::Borrowed(protocol),
        field: Cow::Borrowed(field),
    })))
}

pub(crate) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(crate) fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Borrowed(key),
        family: None,
        dir: None,
    }))
}

/// An anonymous set `{ a, b, c }`.
pub(crate) fn anon_set(items: impl IntoIterator<Item = Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(items.into_iter().map(SetItem::Element).collect()))
}

pub(crate) fn op(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

pub(crate) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    op(left, Operator::EQ, right)
}

/// `left in right` (a set, named or anonymous).
pub(crate) fn is_in(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    op(left, Operator::IN, right)
}

pub(crate) fn iifname_in<'a>(names: impl IntoIterator<Item = &'a String>) -> Statement<'static> {
    is_in(
        meta(MetaKey::Iifname),
        anon_set(names.into_iter().map(|n| s(n.clone()))),
    )
}

pub(crate) fn oifname_in<'a>(names: impl IntoIterator<Item = &'a String>) -> Statement<'static> {
    is_in(
        meta(MetaKey::Oifname),
        anon_set(names.into_iter().map(|n| s(n.clone()))),
    )
}

pub(crate) fn ct_state(states: &[&'static str]) -> Statement<'static> {
    is_in(ct("state"), Expression::List(states.iter().map(|st| s(*st)).collect()))
}

pub(crate) fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

pub(crate) fn drop_() -> Statement<'static> {
    Statement::Drop(None)
}

pub(crate) fn jump(chain: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: Cow::Owned(chain.to_string()),
    })
}

pub(crate) fn goto(chain: &str) -> Statement<'static> {
    Statement::Goto(JumpTarget {
        target: Cow::Owned(chain.to_string()),
    })
}

pub(crate) fn counter() -> Statement<'static> {
    Statement::Counter(nftables::stmt::Counter::Anonymous(None))
}
