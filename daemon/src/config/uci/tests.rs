use super::parse::{parse, Pos};
use super::*;

fn values(file: &UciFile, section: usize, option: &str) -> Vec<String> {
    file.sections[section]
        .option(option)
        .map(|o| o.values.iter().map(|v| v.text.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn quoting_as_libuci_reads_it() {
    let text = concat!(
        "package bulkhead\n",
        "config main\n",
        "\toption version  1.4.1\n",
        "\toption single 'it''s'\n",
        "\toption double \"say \\\"hi\\\" \\\\o/\"\n",
        "\toption glued 'a'\"b\"c\n",
        "\toption hash 'not # a comment' # but this is\n",
        "\toption bare a#b\n",
        "\toption spaced '  two  spaces  '\n",
    );
    let f = parse(text).expect("valid");
    assert_eq!(f.sections.len(), 1);
    assert_eq!(f.sections[0].kind, "main");
    assert_eq!(f.sections[0].name, None, "anonymous");
    assert_eq!(values(&f, 0, "version"), ["1.4.1"]);
    assert_eq!(values(&f, 0, "single"), ["its"], "'it''s' is two quoted pieces glued");
    assert_eq!(values(&f, 0, "double"), ["say \"hi\" \\o/"]);
    assert_eq!(values(&f, 0, "glued"), ["abc"]);
    assert_eq!(values(&f, 0, "hash"), ["not # a comment"]);
    assert_eq!(values(&f, 0, "bare"), ["a"], "# ends an unquoted word");
    assert_eq!(values(&f, 0, "spaced"), ["  two  spaces  "]);
    let nbsp = parse("config a\n\toption nb a\u{a0}b\n").expect("one value");
    assert_eq!(values(&nbsp, 0, "nb"), ["a\u{a0}b"], "only ASCII white space separates");
}

#[test]
fn multi_line_values_and_continued_lines() {
    // Shaped like libuci's own test data (tests/shunit2/references/
    // show_parsing_multiline.data): a quoted value over several lines with a
    // comment after it.
    let text = "config sockd 'instance0'\n\
                \toption extra '\n\t\tclient pass {\n\t\t} ' # ends here\n\
                \toption joined one\\\ntwo\n\
                \toption after x\n";
    let f = parse(text).expect("valid");
    assert_eq!(values(&f, 0, "extra"), ["\n\t\tclient pass {\n\t\t} "]);
    assert_eq!(
        values(&f, 0, "joined"),
        ["onetwo"],
        "\\ at the end of a line continues it"
    );
    let after = f.sections[0].option("after").expect("after");
    assert_eq!(
        after.at,
        Pos { line: 7, column: 2 },
        "lines are counted through the multi-line value"
    );
}

#[test]
fn lists_sections_and_merging() {
    let text = "config interface 'lan'\n\
                \tlist ports 'lan1'\n\
                \tlist ports 'lan2'\n\
                \toption proto dhcp\n\
                config segment\n\
                \toption network iot\n\
                config segment\n\
                \toption network guest\n\
                config interface 'lan'\n\
                \toption proto static\n\
                \toption ipaddr 10.0.0.1\n\
                c x ; o a 1 ;l b 2 ; l b '3';o e 5\n\
                config y\n\
                \toption kept here\n\
                \toption kept\n\
                \toption kept ''\n\
                \toption turned first\n\
                \tlist turned second\n\
                c z; o dropped 1\n\
                config 'odd.type-name'\n";
    let f = parse(text).expect("valid");
    let kinds: Vec<(&str, Option<&str>)> = f
        .sections
        .iter()
        .map(|s| (s.kind.as_str(), s.name.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("interface", Some("lan")),
            ("segment", None),
            ("segment", None),
            ("x", None),
            ("y", None),
            ("z", None),
            ("odd.type-name", None)
        ],
        "a named section given twice is one section; anonymous ones are each their own"
    );
    assert_eq!(values(&f, 0, "ports"), ["lan1", "lan2"]);
    assert!(f.sections[0].option("ports").is_some_and(|o| o.is_list));
    assert_eq!(values(&f, 0, "proto"), ["static"], "the later option wins");
    assert_eq!(values(&f, 0, "ipaddr"), ["10.0.0.1"]);
    assert_eq!(
        values(&f, 3, "a"),
        ["1"],
        "; separates commands, keywords by their first letter"
    );
    assert_eq!(values(&f, 3, "b"), ["2", "3"]);
    assert_eq!(
        values(&f, 3, "e"),
        ["5"],
        "; right after a quoted argument separates too"
    );
    assert_eq!(
        values(&f, 4, "kept"),
        ["here"],
        "option without a value, or an empty one, changes nothing"
    );
    assert_eq!(
        values(&f, 4, "turned"),
        ["first", "second"],
        "list after option makes a list of both"
    );
    assert!(
        f.sections[5].options.is_empty(),
        "; glued to unquoted text ends the line (libuci writes its NUL there)"
    );
}
#[test]
fn every_syntax_error_with_its_line() {
    let text = "option early 1\n\
                config ok 'fine'\n\
                \toption good 1\n\
                \tfrobnicate x\n\
                \toption bad-name 1\n\
                \toption a b c\n\
                config ok 'fine'\n\
                config other 'fine'\n\
                config 'bad type'\n\
                \toption open 'never closed\n";
    let errors = parse(text).expect_err("invalid");
    let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.at.line, e.message.as_str())).collect();
    let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [1, 4, 5, 6, 8, 9, 10], "{found:#?}");
    assert!(found[0].1.contains("before the first `config`"));
    assert!(found[1].1.contains("invalid command `frobnicate`"));
    assert!(found[2].1.contains("invalid character in the option name"));
    assert!(found[3].1.contains("too many arguments (`c`"));
    assert!(found[4].1.contains("was a `ok` on line 2"));
    assert!(found[5].1.contains("section type"));
    assert!(found[6].1.contains("unterminated '"));
    assert_eq!(errors[3].at.column, 13, "points at the extra argument");
}

#[test]
fn uci_is_told_from_toml() {
    assert!(looks_like_uci("# comment\n\nconfig bulkhead 'main'\n"));
    assert!(looks_like_uci("package bulkhead\nconfig wan\n"));
    assert!(!looks_like_uci("state_dir = \"x\"\n[wan]\n"));
    assert!(!looks_like_uci("config = 1\n"), "a TOML key named config");
    assert!(!looks_like_uci(""));
}

const NETWORK: &str = "\
config interface 'loopback'
\toption device 'lo'
\toption proto 'static'
\toption ipaddr '127.0.0.1'
\toption netmask '255.0.0.0'

config device
\toption name 'br-lan'
\toption type 'bridge'
\tlist ports 'lan1'
\tlist ports 'lan2'

config interface 'lan'
\toption device 'br-lan'
\toption proto 'static'
\toption ipaddr '192.168.1.1'
\toption netmask '255.255.255.0'
\toption ip6assign '60'

config interface 'iot'
\toption device 'br-iot'
\toption proto 'static'
\tlist ipaddr '192.168.20.1/24'

config interface 'wan'
\toption device 'wan'
\toption proto 'dhcp'

config interface 'wanpppoe'
\toption device 'eth1'
\toption proto 'pppoe'

config interface 'old'
\toption type 'bridge'
\toption ifname 'eth0.1 eth0.2'
\toption proto 'dhcp'
";

fn rendered(text: &str) -> Result<Rendered, Vec<ConfigError>> {
    to_toml(Path::new("/etc/config/bulkhead"), text, Ok(NETWORK))
}

fn toml_of(text: &str) -> toml::Table {
    let r = rendered(text).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(r.toml.lines().count(), r.origins.len(), "one origin per line");
    r.toml.parse().unwrap_or_else(|e| panic!("{e}\n{}", r.toml))
}

#[test]
fn networks_by_their_openwrt_names() {
    let t = toml_of(
        "config bulkhead 'main'\n\toption enabled '1'\n\
         config wan 'wan'\n\toption network 'wan'\n\
         config segment 'lan'\n\toption network 'lan'\n\
         config segment\n\toption network 'iot'\n\toption dhcp 'serve'\n\toption dhcp_pool '192.168.20.100-192.168.20.199'\n\
         config web 'web'\n\tlist listen 'lan:8080'\n\tlist listen '127.0.0.1:8080'\n",
    );
    assert_eq!(t["wan"]["interface"].as_str(), Some("wan"));
    assert_eq!(
        t["wan"]["police_input"].as_bool(),
        Some(false),
        "fw4 guards the WAN on OpenWrt"
    );
    let segs = t["segments"].as_array().expect("segments");
    assert_eq!(segs[0]["name"].as_str(), Some("lan"));
    assert_eq!(segs[0]["interface"].as_str(), Some("br-lan"));
    assert_eq!(segs[0]["kind"].as_str(), Some("existing"));
    assert_eq!(segs[0]["ipv4"].as_str(), Some("192.168.1.1/24"));
    assert_eq!(
        segs[0]["dhcp"].as_str(),
        Some("observe"),
        "dnsmasq serves DHCP on OpenWrt"
    );
    assert_eq!(
        segs[1]["name"].as_str(),
        Some("iot"),
        "an anonymous segment takes its network's name"
    );
    assert_eq!(segs[1]["ipv4"].as_str(), Some("192.168.20.1/24"));
    assert_eq!(segs[1]["dhcp"].as_str(), Some("serve"));
    let listen: Vec<&str> = t["web"]["listen"]
        .as_array()
        .expect("listen")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(listen, ["192.168.1.1:8080", "127.0.0.1:8080"]);
    assert!(
        t.get("enabled").is_none(),
        "the init script's switch stays out of the daemon's config"
    );
    assert_eq!(
        t["state_dir"].as_str(),
        Some("/etc/bulkhead/state"),
        "state survives reboots"
    );
}

#[test]
fn device_names_as_netifd_makes_them() {
    let wan = |net: &str| {
        let t = toml_of(&format!("config wan\n\toption network '{net}'\n"));
        t["wan"]["interface"].as_str().map(str::to_string)
    };
    assert_eq!(
        wan("wanpppoe").as_deref(),
        Some("pppoe-wanpppoe"),
        "PPPoE makes its own link"
    );
    assert_eq!(wan("old").as_deref(), Some("br-old"), "19.07's type bridge");
}

#[test]
fn typed_options_and_lists() {
    let t = toml_of(
        "config dns 'dns'\n\toption enabled 'yes'\n\toption cache_entries '5000'\n\toption upstreams '192.0.2.1'\n\
         \toption rebind_protection off\n\
         config blocklist\n\toption name 'ads'\n\toption file '/etc/bulkhead/lists/ads.txt'\n\
         config blocklist\n\toption name 'more'\n\toption url 'https://example.com/x.txt'\n",
    );
    assert_eq!(t["dns"]["enabled"].as_bool(), Some(true));
    assert_eq!(t["dns"]["rebind_protection"].as_bool(), Some(false));
    assert_eq!(t["dns"]["cache_entries"].as_integer(), Some(5000));
    assert_eq!(
        t["dns"]["upstreams"].as_array().map(Vec::len),
        Some(1),
        "one option is a list of one"
    );
    assert_eq!(t["dns"]["blocklists"].as_array().map(Vec::len), Some(2));
}

#[test]
fn render_errors_name_the_option() {
    let errors = rendered(
        "config bulkhead 'main'\n\
         config wan\n\toption network 'nope'\n\
         config dns\n\toption enabled 'maybe'\n\toption cache_entries lots\n\
         config dns\n\
         config frob\n\
         config segment\n\toption network 'wan'\n",
    )
    .expect_err("invalid");
    let found: Vec<(usize, &str, &str)> = errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.message.as_str()))
        .collect();
    assert!(
        found.iter().any(|(l, f, m)| *l == 3
            && *f == "bulkhead.@wan[0].network"
            && m.contains("no interface `nope`")
            && m.contains("lan, iot, wan")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|(l, _, m)| *l == 5 && m.contains("yes/no")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|(l, _, m)| *l == 6 && m.contains("whole number")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|(l, _, m)| *l == 7 && m.contains("a second `dns`")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|(l, _, m)| *l == 8 && m.contains("unknown section type `frob`")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|(l, _, m)| *l == 10 && m.contains("no static IPv4")),
        "a segment on a DHCP network has no router address: {found:#?}"
    );
    assert!(errors.iter().all(|e| e.file == Path::new("/etc/config/bulkhead")));
}

#[test]
fn syntax_errors_of_the_network_file_name_it() {
    let errors = to_toml(
        Path::new("/etc/config/bulkhead"),
        "config wan\n\toption network wan\n",
        Ok("config interface 'wan'\n\toption device 'x' 'y'\n"),
    )
    .expect_err("invalid");
    assert_eq!(errors[0].file, Path::new("/etc/config/network"));
    assert_eq!(errors[0].line, 2);
}

/// Every setting the example `bulkhead.toml` shows (it shows them all) is
/// typed the same way by the UCI renderer: a boolean or whole-number setting
/// missing from its tables would reach the loader as a string.
#[test]
fn every_typed_setting_of_the_example_is_known() {
    let example = include_str!("../../../../examples/bulkhead.toml");
    // Commented settings too: `# key = value` lines.
    let mut missing = Vec::new();
    for line in example.lines() {
        let l = line.trim_start_matches(['#', ' ']);
        let Some((key, value)) = l.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        if key.contains(' ') || key.is_empty() {
            continue;
        }
        let value = value.split(" #").next().unwrap_or_default().trim();
        let is_bool = value == "true" || value == "false";
        let is_int = value.parse::<i64>().is_ok();
        let is_list = value.starts_with('[');
        if (is_bool && !render::BOOL_KEYS.contains(&key))
            || (is_int && !render::INT_KEYS.contains(&key))
            || (is_list && !render::LIST_KEYS.contains(&key))
        {
            missing.push(key.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "settings the UCI renderer would mistype: {missing:?}"
    );
}

/// The whole path: a UCI file and a network file on disk, through the one
/// loader, errors pointing at UCI lines.
#[test]
fn loads_through_the_one_loader_and_points_back() {
    let dir = std::env::temp_dir().join(format!("bulkhead-uci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
    for (name, text) in crate::config::SHIPPED_POLICIES {
        std::fs::write(dir.join("policies").join(name), text).expect("write");
    }
    std::fs::write(dir.join("network"), NETWORK).expect("write");
    let main = |extra: &str| {
        format!(
            "config bulkhead 'main'\n\
             \toption state_dir '{0}/state'\n\
             \toption policies_dir '{0}/policies'\n\
             config wan 'wan'\n\toption network 'wan'\n\
             config segment 'lan'\n\toption network 'lan'\n\
             config segment 'iot'\n\toption network 'iot'\n{extra}",
            dir.display()
        )
    };
    let path = dir.join("bulkhead");
    std::fs::write(&path, main("")).expect("write");
    let config = crate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.wan_interface, "wan");
    assert!(!config.police_wan_input);
    assert_eq!(config.segments.len(), 2);
    assert_eq!(config.segments[0].interface, "br-lan");
    assert_eq!(config.segments[0].dhcp, crate::config::DhcpMode::Observe);
    assert_eq!(config.source, path);

    // Line 10 is the bad pool: the loader's error comes back to it.
    std::fs::write(&path, main("\toption dhcp_pool '10.9.9.1-10.9.9.9'\n")).expect("write");
    let errors = crate::config::load(&path).expect_err("invalid").0;
    let at: Vec<(usize, String)> = errors.iter().map(|e| (e.line, e.to_string())).collect();
    let prefix = format!("{}:10:", path.display());
    assert!(
        at.iter()
            .any(|(l, m)| *l == 10 && m.contains("dhcp_pool") && m.starts_with(&prefix)),
        "{at:#?}"
    );
    // Two segments on one network: the second's interface is refused, on its line.
    std::fs::write(&path, main("config segment 'again'\n\toption network 'iot'\n")).expect("write");
    let errors = crate::config::load(&path).expect_err("one network twice").0;
    assert!(
        errors
            .iter()
            .any(|e| e.line == 11 && e.message.contains("already used")),
        "{errors:#?}"
    );
    // The network file unreadable: why, where the network is named.
    let _ = std::fs::remove_file(dir.join("network"));
    std::fs::write(&path, main("")).expect("write");
    let errors = crate::config::load(&path).expect_err("no network file").0;
    assert!(
        errors
            .iter()
            .any(|e| e.line == 5 && e.message.contains("could not be read") && e.message.contains("No such file")),
        "{errors:#?}"
    );
    std::fs::write(dir.join("network"), NETWORK).expect("write");
    // An option the setting's table does not have: the parser's error, on its line.
    std::fs::write(&path, main("\toption cache 1\n")).expect("write");
    let errors = crate::config::load(&path).expect_err("invalid").0;
    assert_eq!((errors[0].line, errors[0].field.as_str()), (10, "cache"), "{errors:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The package's /etc/config/bulkhead, with OpenWrt's default network file,
/// is a valid configuration as shipped.
#[test]
fn the_shipped_openwrt_config_loads() {
    let shipped = include_str!("../../../../openwrt/bulkhead/files/bulkhead.config");
    let path = Path::new("/etc/config/bulkhead");
    let r = to_toml(path, shipped, Ok(NETWORK)).unwrap_or_else(|e| panic!("{e:#?}"));
    let policies: Vec<(PathBuf, String)> = crate::config::SHIPPED_POLICIES
        .iter()
        .map(|(n, t)| (PathBuf::from(n), t.to_string()))
        .collect();
    let config = crate::config::load_from_texts(path, &r.toml, &policies).unwrap_or_else(|e| panic!("{e}\n{}", r.toml));
    assert_eq!(config.wan_interface, "wan");
    assert_eq!(config.segments[0].interface, "br-lan");
    assert_eq!(config.segments[0].ipv4.to_string(), "192.168.1.1/24");
    assert!(
        !config.dns.enabled,
        "dnsmasq keeps port 53 until the homeowner moves it"
    );
    assert_eq!(config.web.listen[0].to_string(), "192.168.1.1:8080");
    assert_eq!(config.state_dir, Path::new("/etc/bulkhead/state"));
    assert_eq!(config.control_socket, Path::new("/var/run/bulkhead/control.sock"));
}

#[test]
fn dns_stays_off_unless_written() {
    let t = toml_of("config wan\n\toption network wan\n");
    assert_eq!(t["dns"]["enabled"].as_bool(), Some(false));
    let t = toml_of("config wan\n\toption network wan\nconfig dns\n\toption enabled 1\n");
    assert_eq!(t["dns"]["enabled"].as_bool(), Some(true));
}

/// An error the loader reports without a position (span 0: TOML line 1) is
/// the file's, line 0, not pinned on the first option's line.
#[test]
fn errors_without_a_position_point_at_the_file() {
    let path = Path::new("/etc/config/bulkhead");
    let r = to_toml(
        path,
        "config bulkhead 'main'\n\toption state_dir '/x'\nconfig wan\n\toption network wan\n",
        Ok(NETWORK),
    )
    .expect("renders");
    let error = |line| ConfigError {
        file: path.to_path_buf(),
        line,
        column: 1,
        field: String::new(),
        message: String::new(),
    };
    let mut errors = vec![error(1), error(2)];
    r.point_back(path, &mut errors);
    assert_eq!((errors[0].line, errors[0].column), (0, 0), "{}", r.toml);
    assert_eq!(
        errors[1].line, 2,
        "state_dir is the second TOML line, from UCI line 2:\n{}",
        r.toml
    );
}
