//! The picture of the home on the zones page: each zone an area with its
//! devices, and arrows for what it may reach — the internet (directly or
//! through the VPN), the router's services, other zones. Drawn on the
//! server as SVG (no script, no chart library, nothing fetched).
//!
//! PURE: [`layout`] turns the zones into shapes with coordinates; the
//! template only writes them out, escaping every name (device names are the
//! devices' own text). One column of zones on the left, the destinations on
//! the right, so the picture stays readable when a phone scales it down.

use crate::model::ZoneView;

/// The picture's width (its `viewBox`; the page scales it).
pub const WIDTH: u32 = 500;
const ZONE_X: u32 = 64;
const ZONE_W: u32 = 280;
const NODE_X: u32 = 396;
const NODE_W: u32 = 96;
const NODE_H: u32 = 40;
const HEAD_H: u32 = 30;
const LINE_H: u32 = 18;
const GAP: u32 = 16;
/// Devices listed per zone; the rest are "+ N more".
pub const MEMBERS_SHOWN: usize = 8;
/// Characters of a device name shown (longer ones end in "…").
pub const NAME_CHARS: usize = 30;
/// Characters of the router-services line shown.
const SERVICES_CHARS: usize = 32;

/// The whole picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneMap {
    /// Its height (the width is [`WIDTH`]).
    pub height: u32,
    /// The zones, top to bottom.
    pub zones: Vec<ZoneArea>,
    /// Where traffic goes: the internet, the VPN, the router.
    pub nodes: Vec<Node>,
    /// What may reach what.
    pub arrows: Vec<Arrow>,
}

/// One zone's area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneArea {
    /// The zone.
    pub id: String,
    /// Top-left corner and size.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// New devices land here.
    pub unknown: bool,
    /// Its devices, each on a line.
    pub members: Vec<MemberLine>,
    /// Devices not listed.
    pub more: usize,
    /// The router's services it may use, e.g. "dns, dhcp".
    pub services: String,
}

/// A device in a zone's area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLine {
    /// Its MAC (the link).
    pub mac: String,
    /// Its name, cut to [`NAME_CHARS`] (untrusted text).
    pub name: String,
    /// Online now.
    pub online: bool,
    /// The text's baseline.
    pub y: u32,
}

/// A destination on the right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `internet`, `vpn` or `router`.
    pub id: &'static str,
    /// What it says.
    pub label: &'static str,
    /// Top.
    pub y: u32,
}

impl Node {
    /// Left edge.
    pub fn x(&self) -> u32 {
        NODE_X
    }

    /// Width.
    pub fn w(&self) -> u32 {
        NODE_W
    }

    /// Height.
    pub fn h(&self) -> u32 {
        NODE_H
    }

    /// The label's x (centred).
    pub fn text_x(&self) -> u32 {
        NODE_X + NODE_W / 2
    }

    /// The label's baseline.
    pub fn text_y(&self) -> u32 {
        self.y + NODE_H / 2 + 5
    }
}

/// An arrow: what may reach what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// Where it starts (a zone id, or `vpn`).
    pub from: String,
    /// Where it points (`internet`, `vpn`, `router`, or a zone id).
    pub to: String,
    /// The SVG path (numbers only).
    pub d: String,
    /// `internet`, `vpn`, `router` or `zone`: how it is drawn.
    pub kind: &'static str,
}

/// Lays the zones out.
pub fn layout(zones: &[ZoneView]) -> ZoneMap {
    let mut y = GAP;
    let mut areas = Vec::with_capacity(zones.len());
    for z in zones {
        let shown = z.members.len().min(MEMBERS_SHOWN);
        let more = z.members.len() - shown;
        let lines = shown.max(1) + usize::from(more > 0) + usize::from(!z.router_services.is_empty());
        let h = HEAD_H + LINE_H * lines as u32 + 8;
        let members = z
            .members
            .iter()
            .take(shown)
            .enumerate()
            .map(|(i, m)| MemberLine {
                mac: m.mac.clone(),
                name: cut(
                    m.name.as_deref().filter(|n| !n.trim().is_empty()).unwrap_or(&m.mac),
                    NAME_CHARS,
                ),
                online: m.online,
                y: y + HEAD_H + LINE_H * i as u32 + 12,
            })
            .collect();
        areas.push(ZoneArea {
            id: z.id.clone(),
            x: ZONE_X,
            y,
            w: ZONE_W,
            h,
            unknown: z.is_unknown_zone,
            members,
            more,
            services: cut(&z.router_services.join(", "), SERVICES_CHARS),
        });
        y += h + GAP;
    }
    let height = y.max(3 * (NODE_H + GAP) + GAP);
    let any_vpn = zones.iter().any(|z| z.internet && z.tunnel);
    let mut nodes = vec![Node {
        id: "internet",
        label: "Internet",
        y: GAP,
    }];
    if any_vpn {
        nodes.push(Node {
            id: "vpn",
            label: "VPN",
            y: GAP + NODE_H + 2 * GAP,
        });
    }
    nodes.push(Node {
        id: "router",
        label: "Router",
        y: height.saturating_sub(NODE_H + GAP),
    });
    let node_y = |id: &str| nodes.iter().find(|n| n.id == id).map_or(0, |n| n.y + NODE_H / 2);
    let mut arrows = Vec::new();
    for (z, a) in zones.iter().zip(&areas) {
        let right = a.x + a.w;
        // Spread a zone's arrows over its right edge so they do not overlap.
        let start = |slot: u32| a.y + 12 + slot * 10;
        let to_node = |slot: u32, node: &str| {
            let (sx, sy) = (right, start(slot));
            let (ex, ey) = (NODE_X, node_y(node));
            let mid = (sx + ex) / 2;
            format!("M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}")
        };
        if z.internet {
            let (to, kind) = if z.tunnel {
                ("vpn", "vpn")
            } else {
                ("internet", "internet")
            };
            arrows.push(Arrow {
                from: z.id.clone(),
                to: to.into(),
                d: to_node(0, to),
                kind,
            });
        }
        if !z.router_services.is_empty() {
            arrows.push(Arrow {
                from: z.id.clone(),
                to: "router".into(),
                d: to_node(1, "router"),
                kind: "router",
            });
        }
        for (slot, r) in z.reach_zones.iter().enumerate() {
            let Some(target) = areas.iter().find(|t| &t.id == r) else {
                continue;
            };
            // An arc on the left, further out the longer it is.
            let (sy, ey) = (a.y + 14 + slot as u32 * 8, target.y + 20);
            let bulge = ZONE_X.saturating_sub(14 + (slot as u32 * 10).min(44)).max(4);
            arrows.push(Arrow {
                from: z.id.clone(),
                to: r.clone(),
                d: format!("M{x},{sy} C{bulge},{sy} {bulge},{ey} {x},{ey}", x = ZONE_X),
                kind: "zone",
            });
        }
    }
    if any_vpn {
        let (sy, ey) = (node_y("vpn"), node_y("internet"));
        let x = NODE_X + NODE_W / 2;
        arrows.push(Arrow {
            from: "vpn".into(),
            to: "internet".into(),
            d: format!("M{x},{} L{x},{}", sy - NODE_H / 2, ey + NODE_H / 2),
            kind: "vpn",
        });
    }
    ZoneMap {
        height,
        zones: areas,
        nodes,
        arrows,
    }
}

/// Text cut to `max` characters (never inside a character), "…" at the end
/// when cut.
fn cut(name: &str, max: usize) -> String {
    let name = name.trim();
    if name.chars().count() <= max {
        return name.to_string();
    }
    let mut s: String = name.chars().take(max - 1).collect();
    s.push('…');
    s
}

impl ZoneArea {
    /// The zone name's baseline.
    pub fn title_y(&self) -> u32 {
        self.y + 20
    }

    /// The "+ N more" line's baseline.
    pub fn more_y(&self) -> u32 {
        self.y + HEAD_H + LINE_H * self.members.len() as u32 + 12
    }

    /// The services line's baseline.
    pub fn services_y(&self) -> u32 {
        self.more_y() + if self.more > 0 { LINE_H } else { 0 }
    }

    /// Where a member's text starts.
    pub fn text_x(&self) -> u32 {
        self.x + 26
    }

    /// Where a member's dot sits.
    pub fn dot_x(&self) -> u32 {
        self.x + 16
    }

    /// The zone name's x.
    pub fn title_x(&self) -> u32 {
        self.x + 12
    }
}

impl MemberLine {
    /// The dot's centre (a little above the baseline).
    pub fn dot_y(&self) -> u32 {
        self.y.saturating_sub(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ZoneMember;

    fn zone(id: &str, internet: bool, tunnel: bool, reach: &[&str], members: usize) -> ZoneView {
        ZoneView {
            id: id.into(),
            description: String::new(),
            internet,
            reach_zones: reach.iter().map(|r| r.to_string()).collect(),
            router_services: vec!["dns".into(), "dhcp".into()],
            intra_zone: false,
            is_unknown_zone: id == "quarantine",
            tunnel,
            members: (0..members)
                .map(|i| ZoneMember {
                    mac: format!("02:00:00:00:00:{i:02x}"),
                    name: (i % 2 == 0).then(|| format!("{id}-device-{i}")),
                    online: i == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn arrows_say_what_each_zone_may_reach() {
        let zones = [
            zone("trusted", true, false, &["iot"], 2),
            zone("iot", true, true, &[], 11),
            zone("quarantine", false, false, &[], 1),
        ];
        let map = layout(&zones);
        let to = |from: &str| -> Vec<&str> {
            map.arrows
                .iter()
                .filter(|a| a.from == from)
                .map(|a| a.to.as_str())
                .collect()
        };
        assert_eq!(to("trusted"), ["internet", "router", "iot"]);
        assert_eq!(to("iot"), ["vpn", "router"], "tunnelled: its internet is the VPN");
        assert_eq!(to("quarantine"), ["router"], "no internet, no arrow");
        assert_eq!(to("vpn"), ["internet"]);
        assert!(map.nodes.iter().any(|n| n.id == "vpn"));
        // Areas do not overlap and the picture holds them all.
        for w in map.zones.windows(2) {
            assert!(w[0].y + w[0].h < w[1].y);
        }
        let last = map.zones.last().expect("zones");
        assert!(last.y + last.h <= map.height);
        // Eight listed, the rest counted; unnamed devices by MAC.
        let iot = &map.zones[1];
        assert_eq!((iot.members.len(), iot.more), (MEMBERS_SHOWN, 3));
        assert_eq!(iot.members[1].name, "02:00:00:00:00:01");
        assert!(iot.more_y() < iot.y + iot.h && iot.services_y() < iot.y + iot.h);
        assert!(map
            .arrows
            .iter()
            .all(|a| a.d.chars().all(|c| c.is_ascii_digit() || " ,MCL".contains(c))));
    }

    #[test]
    fn without_a_tunnel_there_is_no_vpn_and_long_names_are_cut() {
        let mut z = zone("trusted", true, false, &["nowhere"], 1);
        z.members[0].name = Some("W".repeat(40) + "界");
        let map = layout(&[z]);
        assert!(map.nodes.iter().all(|n| n.id != "vpn"));
        assert_eq!(map.arrows.len(), 2, "an unknown zone gets no arrow: {:?}", map.arrows);
        let name = &map.zones[0].members[0].name;
        assert_eq!(name.chars().count(), NAME_CHARS);
        assert!(name.ends_with('…'));
    }
}
