//! The summary: which numbers are compared, medians and ratios, printed as tables.

use super::*;

/// One row of the summary: a label and how to read a number from a sample.
pub(crate) struct Metric {
    pub(crate) label: &'static str,
    pub(crate) kinds: &'static [Kind],
    pub(crate) value: fn(&Sample) -> Option<f64>,
    /// Decimals to print.
    pub(crate) decimals: usize,
}

pub(crate) fn metrics() -> Vec<Metric> {
    const ALL: &[Kind] = &Kind::ALL;
    const FAST: &[Kind] = &[Kind::Hit, Kind::Miss];
    vec![
        Metric {
            label: "QPS",
            kinds: FAST,
            value: |s| Some(s.result.qps),
            decimals: 0,
        },
        Metric {
            label: "avg latency (µs)",
            kinds: ALL,
            value: |s| Some(micros(s.result.avg_latency)),
            decimals: 0,
        },
        Metric {
            label: "p50 latency (µs)",
            kinds: &[Kind::Fixed],
            value: |s| s.result.latency_percentiles.map(|p| micros(p.p50)),
            decimals: 0,
        },
        Metric {
            label: "p99 latency (µs)",
            kinds: &[Kind::Fixed],
            value: |s| s.result.latency_percentiles.map(|p| micros(p.p99)),
            decimals: 0,
        },
        Metric {
            label: "queries sent",
            kinds: ALL,
            value: |s| Some(s.result.queries_sent as f64),
            decimals: 0,
        },
        Metric {
            label: "lost",
            kinds: ALL,
            value: |s| Some(s.result.queries_lost as f64),
            decimals: 0,
        },
        Metric {
            label: "UDP receive-buffer drops in the resolver namespace",
            kinds: ALL,
            value: |s| s.rcvbuf_drops.map(|d| d as f64),
            decimals: 0,
        },
        Metric {
            label: "answers not NOERROR",
            kinds: ALL,
            value: |s| Some(s.result.queries_completed.saturating_sub(s.result.rcode("NOERROR")) as f64),
            decimals: 0,
        },
        Metric {
            label: "upstream queries",
            kinds: ALL,
            value: |s| Some(s.upstream_queries as f64),
            decimals: 0,
        },
        Metric {
            label: "CPU µs per answer",
            kinds: ALL,
            value: Sample::cpu_per_query,
            decimals: 1,
        },
        Metric {
            label: "machine CPU µs per answer (all processes + kernel)",
            kinds: ALL,
            value: |s| s.per_answer(s.machine.map(|m| m.busy)),
            decimals: 1,
        },
        Metric {
            label: "of which softirq µs per answer",
            kinds: ALL,
            value: |s| s.per_answer(s.machine.map(|m| m.softirq)),
            decimals: 1,
        },
        Metric {
            label: "of which dnsperf µs per answer",
            kinds: ALL,
            value: |s| s.per_answer(s.machine.map(|m| m.children)),
            decimals: 1,
        },
        Metric {
            label: "other load on the machine (cores)",
            kinds: ALL,
            value: Sample::other_load,
            decimals: 2,
        },
        Metric {
            label: "machine idle (% of all CPUs)",
            kinds: ALL,
            value: |s| {
                s.machine
                    .filter(|m| m.busy + m.idle > 0.0)
                    .map(|m| 100.0 * m.idle / (m.busy + m.idle))
            },
            decimals: 0,
        },
        Metric {
            label: "VmRSS when ready, before load (MiB)",
            kinds: ALL,
            value: |s| s.memory_ready.map(|m| m.rss_kib as f64 / 1024.0),
            decimals: 1,
        },
        Metric {
            label: "VmRSS after the run (MiB)",
            kinds: ALL,
            value: |s| s.memory.map(|m| m.rss_kib as f64 / 1024.0),
            decimals: 1,
        },
        Metric {
            label: "VmHWM (MiB)",
            kinds: ALL,
            value: |s| s.memory.map(|m| m.hwm_kib as f64 / 1024.0),
            decimals: 1,
        },
    ]
}

pub(crate) fn print_report(args: &Args, contenders: &[Box<dyn Contender>], samples: &[Sample]) {
    let labels: Vec<String> = contenders.iter().map(|c| c.label()).collect();
    println!(
        "\n## DNS peer benchmark: medians of {} rounds, {} s runs, {} dnsperf clients\n",
        args.rounds, args.seconds, args.clients
    );
    println!(
        "| run | measure | A: {} | B: {} | B/A |",
        labels.first().map_or("", String::as_str),
        labels.get(1).map_or("", String::as_str)
    );
    println!("| --- | --- | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        for metric in metrics().iter().filter(|m| m.kinds.contains(&kind)) {
            let med = |contender: usize| {
                median(
                    samples
                        .iter()
                        .filter(|s| s.contender == contender && s.kind == kind)
                        .filter_map(|s| (metric.value)(s))
                        .collect(),
                )
            };
            let (a, b) = (med(0), med(1));
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.*}", metric.decimals));
            let ratio = match (a, b) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
                _ => "-".to_string(),
            };
            println!(
                "| {} | {} | {} | {} | {ratio} |",
                kind.name(args.rate),
                metric.label,
                show(a),
                show(b)
            );
        }
    }

    println!("\n### Every run\n");
    println!(
        "| round | contender | run | QPS | avg µs | p99 µs | sent | lost | not NOERROR | upstream queries \
         | CPU µs/answer | VmRSS KiB | other load (cores) |"
    );
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in samples {
        let r = &s.result;
        let p99 = r
            .latency_percentiles
            .map_or("-".to_string(), |p| format!("{:.0}", micros(p.p99)));
        let cpu = s.cpu_per_query().map_or("-".to_string(), |c| format!("{c:.1}"));
        let rss = s.memory.map_or("-".to_string(), |m| m.rss_kib.to_string());
        let other = s.other_load().map_or("-".to_string(), |l| format!("{l:.2}"));
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {p99} | {} | {} | {} | {} | {cpu} | {rss} | {other} |",
            s.round + 1,
            letter(s.contender),
            s.kind.name(args.rate),
            r.qps,
            micros(r.avg_latency),
            r.queries_sent,
            r.queries_lost,
            r.queries_completed.saturating_sub(r.rcode("NOERROR")),
            s.upstream_queries
        );
    }
}
