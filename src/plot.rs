//! A hand-written SVG chart of measured speedup vs K per domain, with the
//! formula's prediction dashed beside it: one picture for `specc bench`
//! (no plotting dependency for a few lines and circles).

use crate::bench::Report;
use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 56.0;
const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Speedup over plain decoding vs K, one line per domain.
pub fn speedup_vs_k(r: &Report, title: &str) -> String {
    let ks: Vec<usize> = r.costs.per_k.iter().map(|c| c.k).collect();
    let (kmin, kmax) = (*ks.iter().min().unwrap_or(&1) as f64, *ks.iter().max().unwrap_or(&1) as f64);
    let mut ymax: f64 = 1.5;
    for d in &r.domains {
        for s in &d.speculative {
            ymax = ymax.max(s.measured_speedup).max(s.predicted_speedup_with_verify_cost.unwrap_or(0.0));
        }
    }
    let ymax = (ymax * 1.1 * 2.0).ceil() / 2.0;
    let x = |k: f64| LEFT + (k - kmin) / (kmax - kmin).max(1.0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / ymax) * (H - TOP - BOTTOM);
    let mut s = String::new();
    writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"##
    )
    .unwrap();
    writeln!(s, r##"<rect width="{W}" height="{H}" fill="white"/>"##).unwrap();
    writeln!(s, r##"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"##, esc(title)).unwrap();
    // Grid and axes.
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let yy = y(v);
        let stroke = if (v - 1.0).abs() < 1e-9 { "#555" } else { "#e5e5e5" };
        writeln!(s, r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/>"##, W - RIGHT)
            .unwrap();
        writeln!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}x</text>"##, LEFT - 6.0, yy + 4.0).unwrap();
        v += 0.5;
    }
    writeln!(s, r##"<text x="{:.1}" y="{:.1}" fill="#555">plain</text>"##, W - RIGHT + 4.0, y(1.0) + 4.0).unwrap();
    for &k in &ks {
        let xx = x(k as f64);
        writeln!(s, r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{k}</text>"##, H - BOTTOM + 18.0).unwrap();
    }
    writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">K (speculative tokens per round)</text>"##,
        (LEFT + W - RIGHT) / 2.0,
        H - 14.0
    )
    .unwrap();
    writeln!(
        s,
        r##"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">speedup over plain decoding</text>"##,
        (TOP + H - BOTTOM) / 2.0
    )
    .unwrap();
    // One measured line (solid) and one predicted line (dashed) per domain.
    for (i, d) in r.domains.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = d
            .speculative
            .iter()
            .filter_map(|r| r.k.map(|k| format!("{:.1},{:.1}", x(k as f64), y(r.measured_speedup))))
            .collect();
        writeln!(s, r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"##, pts.join(" "))
            .unwrap();
        for r in &d.speculative {
            if let Some(k) = r.k {
                writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: K={k}, {:.2}x</title></circle>"##,
                    x(k as f64),
                    y(r.measured_speedup),
                    esc(&d.domain),
                    r.measured_speedup
                )
                .unwrap();
            }
        }
        let pred: Vec<String> = d
            .speculative
            .iter()
            .filter_map(|r| Some(format!("{:.1},{:.1}", x(r.k? as f64), y(r.predicted_speedup_with_verify_cost?))))
            .collect();
        writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,4"/>"##,
            pred.join(" ")
        )
        .unwrap();
        if let Some(a) = &d.adaptive {
            let yy = y(a.measured_speedup);
            writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{color}" stroke-width="1" stroke-dasharray="1,3"/>"##,
                W - RIGHT
            )
            .unwrap();
        }
        let ly = TOP + 16.0 + 20.0 * i as f64;
        let label = match d.synthetic_acceptance {
            Some(a) => format!("synthetic A={a}"),
            None => d.domain.clone(),
        };
        writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{color}"/>"##,
            W - RIGHT + 16.0,
            ly - 6.0
        )
        .unwrap();
        writeln!(s, r##"<text x="{:.1}" y="{ly:.1}">{} (best K={})</text>"##, W - RIGHT + 36.0, esc(&label), d.best_k)
            .unwrap();
    }
    let ly = TOP + 24.0 + 20.0 * r.domains.len() as f64;
    writeln!(
        s,
        r##"<text x="{:.1}" y="{ly:.1}" fill="#555">solid: measured</text><text x="{:.1}" y="{:.1}" fill="#555">dashed: formula</text><text x="{:.1}" y="{:.1}" fill="#555">dotted: adaptive K</text>"##,
        W - RIGHT + 16.0,
        W - RIGHT + 16.0,
        ly + 16.0,
        W - RIGHT + 16.0,
        ly + 32.0
    )
    .unwrap();
    s.push_str("</svg>\n");
    s
}
