//! Draws a [`Timeline`] as a standalone SVG, or as an HTML page around that SVG, so a run
//! can be read in a browser without a server: time runs left to right, one lane per node.
//!
//! The text is written by hand (no XML crate) straight into one `String`, because a run
//! may hold [`crate::timeline::MAX_MESSAGES`] frames and the file should still be quick
//! to make and small enough to open. Coordinates carry at most one decimal for the same
//! reason.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use flotilla_core::Instant;

use crate::timeline::{Cut, Mark, MarkKind, Message, Span, SpanKind, Timeline};

/// Narrowest drawing, so a short run still has room for the header and legend.
const MIN_WIDTH: f64 = 1200.0;
/// Widest drawing; browsers get sluggish and scrolling loses all sense of place beyond it.
const MAX_WIDTH: f64 = 24_000.0;
/// Horizontal scale before clamping: a 60 s run is about 7000 px wide.
const PX_PER_SEC: f64 = 120.0;
/// Busy runs get wider than their length alone asks for, so arrows do not merge into a wall.
const PX_PER_MESSAGE: f64 = 2.0;
const RIGHT_MARGIN: f64 = 60.0;
/// Gap between the names and time zero, so the first tick label is not under the names.
const PLOT_PAD: f64 = 16.0;

const HEADER_BASELINE: f64 = 20.0;
const LEGEND_TOP: f64 = 30.0;
const LEGEND_HEIGHT: f64 = 20.0;
/// Rows above the lanes for verdict and partition labels, staggered so they overlap less.
const STRIP_TOP: f64 = 58.0;
const STRIP_ROW: f64 = 13.0;
const STRIP_ROWS: usize = 3;
const AXIS_HEIGHT: f64 = 22.0;
const BOTTOM_MARGIN: f64 = 34.0;

/// Total lane height aimed at; lanes shrink past this so 100 nodes stay a few thousand px.
const LANES_BUDGET: f64 = 2400.0;
const MIN_LANE: f64 = 6.0;
const MAX_LANE: f64 = 56.0;
/// Height of the lane area when there are no lanes at all, so the axis still has a home.
const EMPTY_LANES: f64 = 40.0;

const NAME_CHARS: usize = 20;
const STRIP_CHARS: usize = 56;
const HEADER_CHARS: usize = 80;
/// Minor ticks only when they would be at least this far apart; closer labels collide.
const MINOR_TICK_PX: f64 = 90.0;
/// Faint copies of the lane names along a wide drawing, since the real ones scroll away.
const ECHO_EVERY_PX: f64 = 1800.0;

const DELIVERED: &str = "#3b6fb6";
const DROPPED: &str = "#e4572e";
const LATE: &str = "#8c8c8c";
const PASS: &str = "#2e9e44";
const FAIL: &str = "#c8102e";
const CUT: &str = "#8e44ad";
const EVENT: &str = "#0b3d91";
const FAULT: &str = "#111111";
const CLIENT: &str = "#0f8a7a";
const EFFECT: &str = "#e08a00";
const PAUSED: &str = "#f7d54a";
const OTHER: &str = "#666666";

/// Draws `t` as a standalone SVG document (with its `xmlns`, no XML declaration, so the
/// same text can also sit inline in HTML).
///
/// Hovering an arrow, span, band or glyph in a browser shows its details from the
/// `<title>` child, which is where long texts and drop reasons live, since the drawing
/// itself only has room for short labels.
pub fn render_svg(t: &Timeline) -> String {
    let layout = Layout::new(t);
    // Roughly what a drawn message or mark costs, so the buffer seldom regrows.
    let mut out = String::with_capacity(8192 + 160 * (t.messages.len() + t.marks.len()));
    // Writing into a String cannot fail; the fmt::Result only threads `?` through.
    let _ = draw(&mut out, t, &layout);
    out
}

/// Draws `t` as a complete HTML5 page: a title, a short key to reading the drawing, and
/// the same SVG as [`render_svg`] inline in a scrollable box.
///
/// Nothing is fetched from elsewhere, so the file can be mailed or attached to a bug. A
/// few lines of inline script keep the lane names, header and time axis in view while
/// the box scrolls; without the script the page still works, it only loses that.
pub fn render_html(t: &Timeline) -> String {
    let svg = render_svg(t);
    let mut out = String::with_capacity(svg.len() + 4096);
    let _ = html(&mut out, t, &svg);
    out
}

fn html(out: &mut String, t: &Timeline, svg: &str) -> fmt::Result {
    let scenario = trunc(&t.scenario, HEADER_CHARS);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    writeln!(
        out,
        "<title>{} (seed {}) · flotilla timeline</title>",
        Esc(&scenario),
        t.seed
    )?;
    out.push_str(concat!(
        "<style>\n",
        "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:12px 16px;color:#222}\n",
        "h1{font-size:18px;margin:0 0 4px}\n",
        "h1 small{font-weight:normal;color:#666}\n",
        ".fl-key{font-size:13px;margin:0 0 8px;padding-left:18px;color:#333}\n",
        ".fl-key li{margin:1px 0}\n",
        ".fl-note{font-size:13px;color:#555;margin:0 0 6px}\n",
        ".fl-warn{color:#b00}\n",
        "#fl-scroll{overflow:auto;max-height:calc(100vh - 40px);border:1px solid #ccc;background:#fff}\n",
        "#fl-scroll svg{display:block}\n",
        "</style>\n</head>\n<body>\n"
    ));
    writeln!(
        out,
        "<h1>{} <small>seed {} · ends at {}</small></h1>",
        Esc(&scenario),
        t.seed,
        t.end
    )?;
    let dropped = t.messages.iter().filter(|m| is_dropped(m)).count();
    write!(
        out,
        "<p class=\"fl-note\">{} nodes, {} messages drawn ({} dropped or undelivered), {} marks.",
        t.nodes.len(),
        t.messages.len(),
        dropped,
        t.marks.len()
    )?;
    let omitted: Vec<String> = [(t.messages_omitted, "messages"), (t.marks_omitted, "marks")]
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !omitted.is_empty() {
        write!(
            out,
            " <span class=\"fl-warn\">The recording was capped: {} not drawn.</span>",
            omitted.join(" and ")
        )?;
    }
    out.push_str(" Hover anything for details; scroll sideways to follow time.</p>\n");
    write!(
        out,
        concat!(
            "<ul class=\"fl-key\">\n",
            "<li><b style=\"color:{delivered}\">Blue arrows</b>: messages, from the sender's lane when sent ",
            "to the receiver's lane when they arrived. ",
            "<b style=\"color:{late}\">Grey dashed arrows</b> arrive after the run ended.</li>\n",
            "<li><b style=\"color:{dropped}\">Red dashed lines ending in ×</b>: messages that never arrived, ",
            "stopping just short of the receiver's lane; the hover text gives the reason ",
            "(none means dropped silently or still in flight when the run ended).</li>\n",
            "<li><b>Grey hatched</b> lane stretches: the node was crashed. ",
            "<b style=\"color:#b89500\">Yellow</b>: paused. <b style=\"color:{cut}\">Violet band</b> ",
            "across all lanes: the network was partitioned or a link blocked.</li>\n",
            "<li>On a lane: <b style=\"color:{event}\">●</b> machine event, <b>◆</b> fault or scripted action, ",
            "<b style=\"color:{client}\">|</b> client traffic, <b style=\"color:{effect}\">■</b> effect.</li>\n",
            "<li>Vertical lines across all lanes: <b style=\"color:{pass}\">green</b> a check passed, ",
            "<b style=\"color:{fail}\">red</b> a check failed, grey dashed other whole-run actions.</li>\n",
            "</ul>\n<div id=\"fl-scroll\">\n"
        ),
        delivered = DELIVERED,
        late = LATE,
        dropped = DROPPED,
        cut = CUT,
        event = EVENT,
        client = CLIENT,
        effect = EFFECT,
        pass = PASS,
        fail = FAIL,
    )?;
    out.push_str(svg);
    out.push_str(concat!(
        "\n</div>\n<script>\n",
        "(function(){\n",
        "var box=document.getElementById('fl-scroll');\n",
        "var x=document.getElementById('fl-pin-x'),y=document.getElementById('fl-pin-y'),xy=document.getElementById('fl-pin-xy');\n",
        "if(!box||!x||!y||!xy)return;\n",
        "box.addEventListener('scroll',function(){\n",
        "var l=box.scrollLeft,t=box.scrollTop;\n",
        "x.setAttribute('transform','translate('+l+',0)');\n",
        "y.setAttribute('transform','translate(0,'+t+')');\n",
        "xy.setAttribute('transform','translate('+l+','+t+')');\n",
        "});\n",
        "})();\n",
        "</script>\n</body>\n</html>\n"
    ));
    Ok(())
}

/// Where everything goes.
struct Layout {
    /// Lanes drawn: one per named node, plus one catch-all if anything refers to a lane
    /// past the names (so a message is never silently left out).
    lanes: usize,
    named: usize,
    lane_h: f64,
    lanes_top: f64,
    lanes_bottom: f64,
    left: f64,
    /// Where time zero is drawn.
    x0: f64,
    plot_w: f64,
    width: f64,
    height: f64,
    /// Nanoseconds shown along the axis; never zero.
    domain: u64,
    label_font: f64,
    ticks: Ticks,
}

impl Layout {
    fn new(t: &Timeline) -> Self {
        let named = t.nodes.len();
        let stray = t.messages.iter().any(|m| m.from >= named || m.to >= named)
            || t.spans.iter().any(|s| s.node >= named)
            || t.marks.iter().any(|m| m.node.is_some_and(|n| n >= named));
        let lanes = named + usize::from(stray);
        let lane_h = if lanes == 0 {
            EMPTY_LANES
        } else {
            (LANES_BUDGET / lanes as f64).clamp(MIN_LANE, MAX_LANE)
        };
        let label_font = (lane_h * 0.45).clamp(5.0, 12.0);
        let longest = t
            .nodes
            .iter()
            .map(|n| n.chars().count().min(NAME_CHARS))
            .max()
            .unwrap_or(0)
            .max(2);
        let left = (longest as f64 * label_font * 0.62 + 22.0).clamp(56.0, 200.0);

        let domain = domain(t);
        let secs = domain as f64 / 1e9;
        let want = (secs * PX_PER_SEC).max(t.messages.len() as f64 * PX_PER_MESSAGE);
        let x0 = left + PLOT_PAD;
        let plot_w = want.clamp(MIN_WIDTH - x0 - RIGHT_MARGIN, MAX_WIDTH - x0 - RIGHT_MARGIN);
        let lanes_top = STRIP_TOP + STRIP_ROWS as f64 * STRIP_ROW + AXIS_HEIGHT;
        let lanes_bottom = lanes_top + lane_h * lanes.max(1) as f64;
        let ticks = Ticks::new(domain, plot_w);
        Layout {
            lanes,
            named,
            lane_h,
            lanes_top,
            lanes_bottom,
            left,
            x0,
            plot_w,
            width: (x0 + plot_w + RIGHT_MARGIN).ceil(),
            height: (lanes_bottom + BOTTOM_MARGIN).ceil(),
            domain,
            label_font,
            ticks,
        }
    }

    fn x(&self, at: Instant) -> f64 {
        self.x_ns(at.as_nanos())
    }

    fn x_ns(&self, ns: u64) -> f64 {
        self.x0 + ns.min(self.domain) as f64 / self.domain as f64 * self.plot_w
    }

    fn px_per_ns(&self) -> f64 {
        self.plot_w / self.domain as f64
    }

    /// Lanes past the names all share the catch-all lane.
    fn lane(&self, node: usize) -> usize {
        node.min(self.named)
    }

    fn y(&self, node: usize) -> f64 {
        self.lanes_top + (self.lane(node) as f64 + 0.5) * self.lane_h
    }

    fn strip_baseline(&self, row: usize) -> f64 {
        STRIP_TOP + (row + 1) as f64 * STRIP_ROW - 3.0
    }
}

/// The span of time to draw: the run, stretched to take in anything recorded after its
/// end (a frame due after the last step, say) so nothing is cut off.
fn domain(t: &Timeline) -> u64 {
    // `Instant::MAX` means "never"; letting it stretch the axis would squash everything
    // else into the first pixel.
    let finite = |at: Instant| if at == Instant::MAX { 0 } else { at.as_nanos() };
    let mut d = finite(t.end);
    for m in &t.messages {
        d = d.max(finite(m.sent));
        if let Some(a) = m.arrived {
            d = d.max(finite(a));
        }
    }
    for s in &t.spans {
        d = d.max(finite(s.from)).max(s.to.map_or(0, finite));
    }
    for c in &t.cuts {
        d = d.max(finite(c.from)).max(c.to.map_or(0, finite));
    }
    for m in &t.marks {
        d = d.max(finite(m.at));
    }
    // A run with nothing in it gets a second of empty axis; anything shorter than a
    // millisecond is shown as one, so the axis keeps a handful of round ticks.
    if d == 0 {
        1_000_000_000
    } else {
        d.max(1_000_000)
    }
}

/// Axis ticks: labelled major ticks 1/2/5 × 10^k apart, about ten across the run, and on
/// wide drawings lighter minor ticks in between so a reader scrolled into the middle still
/// sees times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    major: u64,
    minor: Option<u64>,
    /// Nanoseconds per label unit, and its name; one unit for the whole axis.
    unit: (u64, &'static str),
}

impl Ticks {
    fn new(domain: u64, plot_w: f64) -> Self {
        let major = nice_steps()
            .find(|&s| domain / s <= 14)
            .unwrap_or(5_000_000_000_000_000_000);
        let px_per_ns = plot_w / domain as f64;
        let minor = nice_steps()
            .take_while(|&s| s < major)
            .find(|&s| major % s == 0 && s as f64 * px_per_ns >= MINOR_TICK_PX);
        // The unit follows the labelled major ticks, so "1.5s" is not followed by
        // "1550ms"; minor labels take the extra decimals instead.
        let unit = if major >= 100_000_000 {
            (1_000_000_000, "s")
        } else if major >= 100_000 {
            (1_000_000, "ms")
        } else {
            (1_000, "µs")
        };
        Ticks { major, minor, unit }
    }

    /// `ns` in the axis unit, with as few decimals as it needs. Steps are at least a
    /// microsecond and the unit at most a thousand times the major step, so three
    /// decimals always suffice.
    fn label(&self, ns: u64) -> String {
        let milli = u128::from(ns) * 1000 / u128::from(self.unit.0);
        let (whole, frac) = (milli / 1000, milli % 1000);
        if frac == 0 {
            format!("{whole}{}", self.unit.1)
        } else {
            let digits = format!("{frac:03}");
            format!("{whole}.{}{}", digits.trim_end_matches('0'), self.unit.1)
        }
    }
}

/// 1, 2, 5 × 10^k ns from a microsecond up; the last fits in a u64.
fn nice_steps() -> impl Iterator<Item = u64> {
    (3..19u32).flat_map(|k| [1u64, 2, 5].map(|m| m * 10u64.pow(k)))
}

fn draw(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    let (w, h) = (l.width, l.height);
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" \
         font-family=\"system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif\" font-size=\"11\" role=\"img\">",
        N(w),
        N(h),
        N(w),
        N(h)
    )?;
    writeln!(
        out,
        "<title>flotilla timeline: {} seed {}</title>",
        Esc(&trunc(&t.scenario, HEADER_CHARS)),
        t.seed
    )?;
    defs(out)?;
    writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>",
        N(w),
        N(h)
    )?;

    lanes(out, t, l)?;
    grid(out, l)?;
    for c in &t.cuts {
        cut_band(out, t, l, c)?;
    }
    for s in &t.spans {
        span(out, t, l, s)?;
    }
    messages(out, t, l)?;
    for m in t.marks.iter().filter(|m| m.node.is_some()) {
        node_mark(out, t, l, m)?;
    }
    let labels = strip_labels(t, l);
    whole_run_lines(out, t, l)?;
    end_line(out, t, l)?;
    bottom_axis(out, l)?;

    // Drawn last so they sit on top: the frozen parts the HTML page's script moves to
    // follow scrolling. In a standalone SVG they simply stay where they are.
    pinned_top(out, t, l, &labels)?;
    pinned_names(out, t, l)?;
    pinned_header(out, t, l)?;
    out.push_str("</svg>\n");
    Ok(())
}

fn defs(out: &mut String) -> fmt::Result {
    write!(
        out,
        concat!(
            "<defs>\n",
            "<marker id=\"fl-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">",
            "<path d=\"M0,0L10,5L0,10z\" fill=\"{delivered}\"/></marker>\n",
            "<marker id=\"fl-arrow-late\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">",
            "<path d=\"M0,0L10,5L0,10z\" fill=\"{late}\"/></marker>\n",
            "<pattern id=\"fl-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">",
            "<rect width=\"6\" height=\"6\" fill=\"#d4d4d4\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#7a7a7a\" stroke-width=\"2.5\"/></pattern>\n",
            "<style>\n",
            ".msg{{stroke:{delivered};stroke-width:1.1;stroke-opacity:.8;fill:none}}\n",
            "line.msg,path.msg{{marker-end:url(#fl-arrow)}}\n",
            ".msg.late{{stroke:{late};stroke-dasharray:5 3;marker-end:url(#fl-arrow-late)}}\n",
            ".msg.dropped{{stroke:{dropped};stroke-width:1.3;stroke-opacity:.9}}\n",
            ".msg.dropped line{{stroke-dasharray:4 2.5}}\n",
            ".msg.dropped path{{stroke-width:1.8}}\n",
            ".lane-bg{{fill:#f3f5f8}}\n",
            ".lifeline{{stroke:#b9c0c8;stroke-width:1}}\n",
            ".grid{{stroke:#d9dde2;stroke-width:1}}\n",
            ".grid.minor{{stroke:#eceef1}}\n",
            ".tick{{fill:#444;font-size:10.5px}}\n",
            ".tick.minor{{fill:#999}}\n",
            ".crashed{{fill:url(#fl-hatch);stroke:#555;stroke-width:.8}}\n",
            ".paused{{fill:{paused};fill-opacity:.75;stroke:#b89500;stroke-width:.8}}\n",
            ".cut{{fill:{cut};fill-opacity:.09;stroke:{cut};stroke-opacity:.6;stroke-dasharray:3 3}}\n",
            ".cut-label{{fill:{cut};font-size:10.5px}}\n",
            ".ev{{fill:{event};stroke:#fff;stroke-width:.6}}\n",
            ".flt{{fill:{fault};stroke:#fff;stroke-width:.6}}\n",
            ".cli{{stroke:{client};stroke-width:1.6}}\n",
            ".eff{{fill:{effect};stroke:#fff;stroke-width:.5}}\n",
            ".verdict.pass{{stroke-width:1.3}}\n",
            ".verdict.fail{{stroke-width:2.2}}\n",
            ".wm{{stroke:{other};stroke-width:1;stroke-dasharray:2 3}}\n",
            ".strip{{font-size:10.5px}}\n",
            ".strip.fail{{font-weight:bold}}\n",
            ".lane-label{{fill:#222}}\n",
            ".lane-echo{{fill:#9aa3ad}}\n",
            ".hdr{{font-size:14px;font-weight:bold;fill:#222}}\n",
            ".warn{{fill:#b00;font-weight:normal}}\n",
            ".lg{{font-size:11px;fill:#333}}\n",
            "</style>\n</defs>\n"
        ),
        delivered = DELIVERED,
        late = LATE,
        dropped = DROPPED,
        paused = PAUSED,
        cut = CUT,
        event = EVENT,
        fault = FAULT,
        client = CLIENT,
        effect = EFFECT,
        other = OTHER,
    )
}

fn lanes(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    out.push_str("<g class=\"lanes\">\n");
    let x1 = l.x0;
    let x2 = l.x0 + l.plot_w;
    for i in 0..l.lanes {
        let top = l.lanes_top + i as f64 * l.lane_h;
        if i % 2 == 1 {
            writeln!(
                out,
                "<rect class=\"lane-bg\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                N(top),
                N(l.width),
                N(l.lane_h)
            )?;
        }
        let y = l.y(i);
        writeln!(
            out,
            "<line class=\"lifeline\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
            N(x1),
            N(y),
            N(x2),
            N(y)
        )?;
    }
    if l.lanes == 0 {
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"#888\">no nodes recorded</text>",
            N(l.x0 + 8.0),
            N(l.lanes_top + EMPTY_LANES / 2.0 + 4.0)
        )?;
    }
    // The real names scroll out of view on a wide drawing opened on its own (the HTML
    // page pins them instead); faint copies along the way keep lanes identifiable.
    if l.plot_w > ECHO_EVERY_PX * 1.3 && l.lane_h >= 10.0 {
        let mut x = l.x0 + ECHO_EVERY_PX;
        while x < l.x0 + l.plot_w - 200.0 {
            for i in 0..l.lanes {
                writeln!(
                    out,
                    "<text class=\"lane-echo\" x=\"{}\" y=\"{}\" font-size=\"{}\">{}</text>",
                    N(x),
                    N(l.y(i) - 3.0),
                    N(l.label_font * 0.85),
                    Esc(&trunc(&lane_name(t, i), NAME_CHARS))
                )?;
            }
            x += ECHO_EVERY_PX;
        }
    }
    out.push_str("</g>\n");
    Ok(())
}

fn grid(out: &mut String, l: &Layout) -> fmt::Result {
    out.push_str("<g class=\"grid-lines\">\n");
    let (y1, y2) = (l.lanes_top, l.lanes_bottom);
    if let Some(minor) = l.ticks.minor {
        let mut at = 0u64;
        while at <= l.domain {
            if !at.is_multiple_of(l.ticks.major) {
                let x = l.x_ns(at);
                writeln!(
                    out,
                    "<line class=\"grid minor\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                    N(x),
                    N(y1),
                    N(x),
                    N(y2)
                )?;
            }
            at = match at.checked_add(minor) {
                Some(a) => a,
                None => break,
            };
        }
    }
    let mut at = 0u64;
    while at <= l.domain {
        let x = l.x_ns(at);
        writeln!(
            out,
            "<line class=\"grid\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
            N(x),
            N(y1),
            N(x),
            N(y2)
        )?;
        at = match at.checked_add(l.ticks.major) {
            Some(a) => a,
            None => break,
        };
    }
    out.push_str("</g>\n");
    Ok(())
}

/// Tick labels at `baseline`, major and minor, for the top (pinned) and bottom axes.
fn tick_labels(out: &mut String, l: &Layout, baseline: f64, tick_y: (f64, f64)) -> fmt::Result {
    let mut at = 0u64;
    let step = l.ticks.minor.unwrap_or(l.ticks.major);
    while at <= l.domain {
        let x = l.x_ns(at);
        let major = at.is_multiple_of(l.ticks.major);
        let class = if major { "tick" } else { "tick minor" };
        writeln!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/><text class=\"{}\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            N(x),
            N(tick_y.0),
            N(x),
            N(tick_y.1),
            class,
            N(x),
            N(baseline),
            l.ticks.label(at)
        )?;
        at = match at.checked_add(step) {
            Some(a) => a,
            None => break,
        };
    }
    Ok(())
}

fn bottom_axis(out: &mut String, l: &Layout) -> fmt::Result {
    out.push_str("<g class=\"axis\">\n");
    let y = l.lanes_bottom;
    writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
        N(l.x0),
        N(y),
        N(l.x0 + l.plot_w),
        N(y)
    )?;
    tick_labels(out, l, y + 17.0, (y, y + 5.0))?;
    out.push_str("</g>\n");
    Ok(())
}

/// A line at the run's end when the axis goes past it, so late arrivals read as late.
fn end_line(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    if t.end == Instant::MAX || t.end.as_nanos() >= l.domain {
        return Ok(());
    }
    let x = l.x(t.end);
    writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\" stroke-width=\"1.5\"><title>run ended at {}</title></line>\
         <text x=\"{}\" y=\"{}\" fill=\"#333\" font-size=\"10.5\">end</text>",
        N(x),
        N(l.lanes_top),
        N(x),
        N(l.lanes_bottom),
        t.end,
        N(x + 3.0),
        N(l.lanes_bottom - 4.0)
    )
}

fn cut_band(out: &mut String, t: &Timeline, l: &Layout, c: &Cut) -> fmt::Result {
    let (x1, x2) = span_x(l, c.from, c.to.unwrap_or(t.end));
    write!(
        out,
        "<rect class=\"cut\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>network cut {}\n{} – {}</title></rect>",
        N(x1),
        N(l.lanes_top),
        N(x2 - x1),
        N(l.lanes_bottom - l.lanes_top),
        Esc(&c.what),
        c.from,
        Until(c.to),
    )
}

/// Horizontal extent of a stretch, at least 2 px so a crash and immediate restart shows.
fn span_x(l: &Layout, from: Instant, to: Instant) -> (f64, f64) {
    let x1 = l.x(from);
    let x2 = l.x(to).max(x1 + 2.0);
    (x1, x2)
}

fn span(out: &mut String, t: &Timeline, l: &Layout, s: &Span) -> fmt::Result {
    let (x1, x2) = span_x(l, s.from, s.to.unwrap_or(t.end));
    let (class, what) = match s.kind {
        SpanKind::Crashed => ("crashed", "crashed"),
        SpanKind::Paused => ("paused", "paused"),
    };
    let hh = (l.lane_h * 0.3).max(2.0);
    write!(
        out,
        "<rect class=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{} {}\n{} – {}</title></rect>",
        class,
        N(x1),
        N(l.y(s.node) - hh),
        N(x2 - x1),
        N(2.0 * hh),
        Esc(&lane_name(t, s.node)),
        what,
        s.from,
        Until(s.to),
    )
}

fn is_dropped(m: &Message) -> bool {
    m.dropped.is_some() || m.arrived.is_none()
}

fn messages(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    // An undelivered frame has no arrival time, so it is drawn heading off for as long as
    // a typical frame took, which makes it look like its delivered neighbours.
    let mut latencies: Vec<u64> = t
        .messages
        .iter()
        .filter(|m| !is_dropped(m))
        .filter_map(|m| {
            m.arrived
                .map(|a| a.as_nanos().saturating_sub(m.sent.as_nanos()))
        })
        .collect();
    let typical = if latencies.is_empty() {
        None
    } else {
        let mid = latencies.len() / 2;
        Some(*latencies.select_nth_unstable(mid).1)
    };
    out.push_str("<g class=\"messages\">\n");
    for m in &t.messages {
        message(out, t, l, m, typical)?;
    }
    out.push_str("</g>\n");
    Ok(())
}

fn message(
    out: &mut String,
    t: &Timeline,
    l: &Layout,
    m: &Message,
    typical: Option<u64>,
) -> fmt::Result {
    let x1 = l.x(m.sent);
    let y1 = l.y(m.from);
    let y2 = l.y(m.to);
    let same_lane = l.lane(m.from) == l.lane(m.to);
    match (m.arrived, &m.dropped) {
        (Some(a), None) => {
            let late = a > t.end;
            let class = if late { "msg late" } else { "msg" };
            let x2 = l.x(a);
            if same_lane {
                // A frame to itself would lie on the lifeline; bow it above instead.
                let x2 = x2.max(x1 + 6.0);
                let bump = (l.lane_h * 0.35).max(3.0);
                write!(
                    out,
                    "<path class=\"{}\" d=\"M{},{}Q{},{} {},{}\">",
                    class,
                    N(x1),
                    N(y1),
                    N((x1 + x2) / 2.0),
                    N(y1 - 2.0 * bump),
                    N(x2),
                    N(y2)
                )?;
                msg_title(out, t, m)?;
                out.push_str("</path>\n");
            } else {
                write!(
                    out,
                    "<line class=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\">",
                    class,
                    N(x1),
                    N(y1),
                    N(x2),
                    N(y2)
                )?;
                msg_title(out, t, m)?;
                out.push_str("</line>\n");
            }
        }
        (arrived, _) => {
            // It heads for the receiver (at its arrival time if it was dropped on arrival,
            // else after a typical frame's latency) and stops just short of the receiver's
            // lifeline: close enough to say whom it was for, short enough never to read as
            // a delivery, and never on some lane in between.
            let tx = match arrived {
                Some(a) => l.x(a),
                None => {
                    let dx = typical.map_or(14.0, |ns| ns as f64 * l.px_per_ns());
                    x1 + dx.clamp(8.0, 120.0)
                }
            };
            let ty = if same_lane {
                y1 - (l.lane_h * 0.45).max(4.0)
            } else {
                y2
            };
            let len = (tx - x1).hypot(ty - y1);
            let short = (l.lane_h * 0.3).max(3.0).min(len * 0.5);
            let frac = if len > 0.0 { 1.0 - short / len } else { 1.0 };
            let ex = x1 + (tx - x1) * frac;
            let ey = y1 + (ty - y1) * frac;
            let c = (l.lane_h * 0.08).clamp(2.0, 3.5);
            out.push_str("<g class=\"msg dropped\">");
            msg_title(out, t, m)?;
            write!(
                out,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><path d=\"M{},{}l{},{}m0,{}l{},{}\"/></g>",
                N(x1),
                N(y1),
                N(ex),
                N(ey),
                N(ex - c),
                N(ey - c),
                N(2.0 * c),
                N(2.0 * c),
                N(-2.0 * c),
                N(-2.0 * c),
                N(2.0 * c)
            )?;
        }
    }
    Ok(())
}

fn msg_title(out: &mut String, t: &Timeline, m: &Message) -> fmt::Result {
    write!(
        out,
        "<title>{} {} → {}\nsent {}",
        Esc(&m.label),
        Esc(&lane_name(t, m.from)),
        Esc(&lane_name(t, m.to)),
        m.sent
    )?;
    match (m.arrived, &m.dropped) {
        (Some(a), None) if a > t.end => write!(out, "\narrives {a}, after the run ended")?,
        (Some(a), None) => write!(out, "\narrived {a}")?,
        (Some(a), Some(why)) => write!(out, "\ndropped at {a}: {}", Esc(why))?,
        (None, Some(why)) => write!(out, "\ndropped: {}", Esc(why))?,
        (None, None) => out.push_str(
            "\nnever arrived: dropped without a reason, or still in flight when the run ended",
        ),
    }
    out.push_str("</title>");
    Ok(())
}

/// Draws one glyph for a mark of `kind` centred near (`x`, `y`), with `title` as its
/// hover text if given. Shared by lanes and the legend so the two always agree.
fn glyph(
    out: &mut String,
    kind: MarkKind,
    x: f64,
    y: f64,
    s: f64,
    title: Option<&str>,
) -> fmt::Result {
    let tag = match kind {
        MarkKind::Event => {
            write!(
                out,
                "<circle class=\"ev\" cx=\"{}\" cy=\"{}\" r=\"{}\"",
                N(x),
                N(y),
                N(s)
            )?;
            "circle"
        }
        MarkKind::Fault => {
            let d = s * 1.35;
            write!(
                out,
                "<path class=\"flt\" d=\"M{},{}l{},{}l{},{}l{},{}z\"",
                N(x),
                N(y - d),
                N(d),
                N(d),
                N(-d),
                N(d),
                N(-d),
                N(-d)
            )?;
            "path"
        }
        MarkKind::Client => {
            let d = s * 1.6;
            write!(
                out,
                "<line class=\"cli\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"",
                N(x),
                N(y - d),
                N(x),
                N(y + d)
            )?;
            "line"
        }
        MarkKind::Effect => {
            let d = s * 0.9;
            write!(
                out,
                "<rect class=\"eff\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
                N(x - d),
                N(y - d),
                N(2.0 * d),
                N(2.0 * d)
            )?;
            "rect"
        }
        MarkKind::Pass => {
            write!(
                out,
                "<circle class=\"verdict pass\" cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"none\" stroke=\"{PASS}\"",
                N(x),
                N(y),
                N(s * 1.2)
            )?;
            "circle"
        }
        MarkKind::Fail => {
            let d = s * 1.4;
            write!(
                out,
                "<path class=\"verdict fail\" d=\"M{},{}l{},{}l{},0z\" fill=\"{FAIL}\" stroke=\"{FAIL}\"",
                N(x),
                N(y - d),
                N(d),
                N(2.0 * d),
                N(-2.0 * d)
            )?;
            "path"
        }
    };
    match title {
        Some(text) => writeln!(out, "><title>{}</title></{tag}>", Esc(text)),
        None => {
            out.push_str("/>\n");
            Ok(())
        }
    }
}

fn node_mark(out: &mut String, t: &Timeline, l: &Layout, m: &Mark) -> fmt::Result {
    let Some(node) = m.node else {
        return Ok(());
    };
    // Kinds sit at different heights in the lane so marks at one instant do not hide
    // each other (or the arrow tips, which land on the lifeline).
    let off = l.lane_h * 0.22;
    let y = l.y(node)
        + match m.kind {
            MarkKind::Event | MarkKind::Effect => -off,
            MarkKind::Fault => 0.0,
            MarkKind::Client | MarkKind::Pass | MarkKind::Fail => off,
        };
    let s = (l.lane_h * 0.075).clamp(1.5, 3.6);
    let title = format!("{} @ {}\n{}", lane_name(t, node), m.at, m.text);
    glyph(out, m.kind, l.x(m.at), y, s, Some(&title))
}

/// A label in the strip above the lanes.
struct StripLabel {
    x: f64,
    /// Row it went into, or `None` if every row was full there (then only the line and
    /// its hover text show).
    row: Option<usize>,
    /// Text runs left of the line, because it would run off the right edge otherwise.
    flip: bool,
    /// Index into `t.marks`, or `None` for a cut.
    mark: Option<usize>,
    cut: Option<usize>,
}

/// Places labels for whole-run marks and cuts, failures first so they are never the ones
/// crowded out, then partitions and other actions, then passes.
fn strip_labels(t: &Timeline, l: &Layout) -> Vec<StripLabel> {
    let font_w = 10.5 * 0.58;
    let mut todo: Vec<(u8, f64, usize, StripLabel)> = Vec::new();
    for (i, m) in t.marks.iter().enumerate() {
        if m.node.is_some() || is_cut_edge(t, m) {
            continue;
        }
        let prio = match m.kind {
            MarkKind::Fail => 0,
            MarkKind::Fault => 1,
            MarkKind::Pass => 3,
            _ => 2,
        };
        let chars = trunc(&m.text, STRIP_CHARS).chars().count();
        let label = StripLabel {
            x: l.x(m.at),
            row: None,
            flip: false,
            mark: Some(i),
            cut: None,
        };
        todo.push((prio, label.x, chars, label));
    }
    for (i, c) in t.cuts.iter().enumerate() {
        let chars = trunc(&c.what, STRIP_CHARS).chars().count() + 5;
        let label = StripLabel {
            x: l.x(c.from),
            row: None,
            flip: false,
            mark: None,
            cut: Some(i),
        };
        todo.push((1, label.x, chars, label));
    }
    todo.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut rows: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); STRIP_ROWS];
    let mut placed = Vec::with_capacity(todo.len());
    for (_, x, chars, mut label) in todo {
        let w = 4.0 + chars as f64 * font_w;
        label.flip = x + w > l.width - 2.0;
        let (x0, x1) = if label.flip { (x - w, x) } else { (x, x + w) };
        let (x0, x1) = (x0.floor() as i64, x1.ceil() as i64);
        label.row = rows.iter_mut().position(|row| {
            // Occupied intervals in a row never overlap, so only the one starting last
            // before our end can collide with us.
            let free = row
                .range(..x1)
                .next_back()
                .is_none_or(|(_, &end)| end <= x0);
            if free {
                row.insert(x0, x1 + 6);
            }
            free
        });
        placed.push(label);
    }
    placed
}

/// A whole-run fault mark at the very moment a cut starts or ends says the same as the
/// band's edge ("partition …", "heal"), so it gets no label of its own.
fn is_cut_edge(t: &Timeline, m: &Mark) -> bool {
    m.node.is_none()
        && m.kind == MarkKind::Fault
        && t.cuts.iter().any(|c| c.from == m.at || c.to == Some(m.at))
}

fn verdict_colour(kind: MarkKind) -> Option<(&'static str, &'static str)> {
    match kind {
        MarkKind::Pass => Some(("verdict pass", PASS)),
        MarkKind::Fail => Some(("verdict fail", FAIL)),
        _ => None,
    }
}

fn whole_run_lines(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    out.push_str("<g class=\"whole-run\">\n");
    // Passes first so a failure at the same instant is drawn over them.
    let mut order: Vec<&Mark> = t.marks.iter().filter(|m| m.node.is_none()).collect();
    order.sort_by_key(|m| match m.kind {
        MarkKind::Pass => 0,
        MarkKind::Fail => 2,
        _ => 1,
    });
    for m in order {
        let x = l.x(m.at);
        match verdict_colour(m.kind) {
            Some((class, colour)) => write!(
                out,
                "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\">",
                N(x),
                N(l.lanes_top),
                N(x),
                N(l.lanes_bottom)
            )?,
            None => write!(
                out,
                "<line class=\"wm\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\">",
                N(x),
                N(l.lanes_top),
                N(x),
                N(l.lanes_bottom)
            )?,
        }
        writeln!(out, "<title>{}\n{}</title></line>", m.at, Esc(&m.text))?;
    }
    out.push_str("</g>\n");
    Ok(())
}

/// The strip of labels and the top axis; the HTML page keeps it at the top of the box.
fn pinned_top(out: &mut String, t: &Timeline, l: &Layout, labels: &[StripLabel]) -> fmt::Result {
    out.push_str("<g id=\"fl-pin-y\">\n");
    let top = LEGEND_TOP + LEGEND_HEIGHT + 2.0;
    writeln!(
        out,
        "<rect x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" fill-opacity=\".95\"/>",
        N(top),
        N(l.width),
        N(l.lanes_top - top)
    )?;
    // The bands continue up behind their labels so a label reads as belonging to its band.
    for c in &t.cuts {
        let (x1, x2) = span_x(l, c.from, c.to.unwrap_or(t.end));
        writeln!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{CUT}\" fill-opacity=\".09\"/>",
            N(x1),
            N(STRIP_TOP),
            N(x2 - x1),
            N(l.lanes_top - STRIP_TOP)
        )?;
    }
    for label in labels {
        let row_top = match label.row {
            Some(r) => STRIP_TOP + r as f64 * STRIP_ROW + 1.0,
            None => STRIP_TOP + STRIP_ROWS as f64 * STRIP_ROW,
        };
        if let Some(i) = label.mark {
            let m = &t.marks[i];
            let (class, colour) = match verdict_colour(m.kind) {
                Some((class, colour)) => (class, colour),
                None => ("wm", OTHER),
            };
            writeln!(
                out,
                "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\"/>",
                N(label.x),
                N(row_top),
                N(label.x),
                N(l.lanes_top)
            )?;
            if let Some(r) = label.row {
                let strip = if m.kind == MarkKind::Fail {
                    "strip fail"
                } else {
                    "strip"
                };
                writeln!(
                    out,
                    "<text class=\"{strip}\" x=\"{}\" y=\"{}\" fill=\"{colour}\"{}><title>{}\n{}</title>{}</text>",
                    N(label_x(label)),
                    N(l.strip_baseline(r)),
                    Anchor(label.flip),
                    m.at,
                    Esc(&m.text),
                    Esc(&trunc(&m.text, STRIP_CHARS))
                )?;
            }
        }
        if let (Some(i), Some(r)) = (label.cut, label.row) {
            let c = &t.cuts[i];
            writeln!(
                out,
                "<text class=\"cut-label\" x=\"{}\" y=\"{}\"{}><title>network cut {}\n{} – {}</title>cut: {}</text>",
                N(label_x(label)),
                N(l.strip_baseline(r)),
                Anchor(label.flip),
                Esc(&c.what),
                c.from,
                Until(c.to),
                Esc(&trunc(&c.what, STRIP_CHARS))
            )?;
        }
    }
    let y = l.lanes_top;
    tick_labels(out, l, y - 7.0, (y - 4.0, y))?;
    out.push_str("</g>\n");
    Ok(())
}

fn label_x(label: &StripLabel) -> f64 {
    if label.flip {
        label.x - 3.0
    } else {
        label.x + 3.0
    }
}

/// ` text-anchor="end"` for a label that runs left of its line, else nothing.
struct Anchor(bool);

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 {
            f.write_str(" text-anchor=\"end\"")
        } else {
            Ok(())
        }
    }
}

/// The lane names; the HTML page keeps them at the left edge of the box.
fn pinned_names(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    out.push_str("<g id=\"fl-pin-x\">\n");
    writeln!(
        out,
        "<rect x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c3c9d0\"/>",
        N(l.lanes_top),
        N(l.left - 4.0),
        N(l.lanes_bottom - l.lanes_top),
        N(l.left - 4.0),
        N(l.lanes_top),
        N(l.left - 4.0),
        N(l.lanes_bottom)
    )?;
    for i in 0..l.lanes {
        let top = l.lanes_top + i as f64 * l.lane_h;
        if i % 2 == 1 {
            writeln!(
                out,
                "<rect class=\"lane-bg\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
                N(top),
                N(l.left - 4.0),
                N(l.lane_h)
            )?;
        }
        let name = lane_name(t, i);
        writeln!(
            out,
            "<text class=\"lane-label\" x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>",
            N(l.left - 10.0),
            N(l.y(i) + l.label_font * 0.35),
            N(l.label_font),
            Esc(&name),
            Esc(&trunc(&name, NAME_CHARS))
        )?;
    }
    out.push_str("</g>\n");
    Ok(())
}

/// Header and legend; the HTML page keeps them in the top-left corner of the box.
fn pinned_header(out: &mut String, t: &Timeline, l: &Layout) -> fmt::Result {
    out.push_str("<g id=\"fl-pin-xy\">\n");
    // Covers the corner above the names too, so scrolled strip labels pass under it.
    writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\
         <rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>",
        N(l.width),
        N(LEGEND_TOP + LEGEND_HEIGHT + 2.0),
        N(l.left - 4.0),
        N(l.lanes_top)
    )?;
    let dropped = t.messages.iter().filter(|m| is_dropped(m)).count();
    write!(
        out,
        "<text class=\"hdr\" x=\"8\" y=\"{}\">{} <tspan font-weight=\"normal\">· seed {} · ends at {} · {} nodes · {} messages ({} dropped or undelivered)</tspan>",
        N(HEADER_BASELINE),
        Esc(&trunc(&t.scenario, HEADER_CHARS)),
        t.seed,
        t.end,
        t.nodes.len(),
        t.messages.len(),
        dropped
    )?;
    if t.messages_omitted > 0 {
        write!(
            out,
            "<tspan class=\"warn\"> · {} messages not drawn</tspan>",
            t.messages_omitted
        )?;
    }
    if t.marks_omitted > 0 {
        write!(
            out,
            "<tspan class=\"warn\"> · {} marks not drawn</tspan>",
            t.marks_omitted
        )?;
    }
    out.push_str("</text>\n");
    legend(out)?;
    out.push_str("</g>\n");
    Ok(())
}

fn legend(out: &mut String) -> fmt::Result {
    let cy = LEGEND_TOP + LEGEND_HEIGHT / 2.0;
    let mut x = 10.0;
    let item = |out: &mut String, x: &mut f64, glyph_w: f64, text: &str| -> fmt::Result {
        writeln!(
            out,
            "<text class=\"lg\" x=\"{}\" y=\"{}\">{}</text>",
            N(*x + glyph_w + 4.0),
            N(cy + 4.0),
            Esc(text)
        )?;
        *x += glyph_w + 4.0 + text.chars().count() as f64 * 6.3 + 14.0;
        Ok(())
    };
    writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{DELIVERED}\" stroke-width=\"1.1\" marker-end=\"url(#fl-arrow)\"/>",
        N(x),
        N(cy + 4.0),
        N(x + 20.0),
        N(cy - 4.0)
    )?;
    item(out, &mut x, 20.0, "delivered")?;
    writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{LATE}\" stroke-width=\"1.1\" stroke-dasharray=\"5 3\" marker-end=\"url(#fl-arrow-late)\"/>",
        N(x),
        N(cy + 4.0),
        N(x + 20.0),
        N(cy - 4.0)
    )?;
    item(out, &mut x, 20.0, "after end")?;
    writeln!(
        out,
        "<g stroke=\"{DROPPED}\" stroke-width=\"1.3\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke-dasharray=\"4 2.5\"/>\
         <path d=\"M{},{}l6,6m0,-6l-6,6\" stroke-width=\"1.8\"/></g>",
        N(x),
        N(cy + 5.0),
        N(x + 13.0),
        N(cy - 1.0),
        N(x + 10.0),
        N(cy - 4.0)
    )?;
    item(out, &mut x, 18.0, "dropped")?;
    writeln!(
        out,
        "<rect class=\"crashed\" x=\"{}\" y=\"{}\" width=\"18\" height=\"10\"/>",
        N(x),
        N(cy - 5.0)
    )?;
    item(out, &mut x, 18.0, "crashed")?;
    writeln!(
        out,
        "<rect class=\"paused\" x=\"{}\" y=\"{}\" width=\"18\" height=\"10\"/>",
        N(x),
        N(cy - 5.0)
    )?;
    item(out, &mut x, 18.0, "paused")?;
    writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"14\" fill=\"{CUT}\" fill-opacity=\".18\" stroke=\"{CUT}\" stroke-opacity=\".6\" stroke-dasharray=\"3 3\"/>",
        N(x),
        N(cy - 7.0)
    )?;
    item(out, &mut x, 18.0, "partition")?;
    for (kind, text) in [
        (MarkKind::Event, "event"),
        (MarkKind::Fault, "fault"),
        (MarkKind::Client, "client"),
        (MarkKind::Effect, "effect"),
    ] {
        glyph(out, kind, x + 5.0, cy, 3.4, None)?;
        item(out, &mut x, 10.0, text)?;
    }
    for (colour, width, text) in [(PASS, 1.3, "check passed"), (FAIL, 2.2, "check failed")] {
        writeln!(
            out,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"{}\"/>",
            N(x + 3.0),
            N(cy - 8.0),
            N(x + 3.0),
            N(cy + 8.0),
            N(width)
        )?;
        item(out, &mut x, 6.0, text)?;
    }
    writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{OTHER}\" stroke-dasharray=\"2 3\"/>",
        N(x + 3.0),
        N(cy - 8.0),
        N(x + 3.0),
        N(cy + 8.0)
    )?;
    item(out, &mut x, 6.0, "other run-wide action")?;
    Ok(())
}

/// The lane's name, or a placeholder for lanes past the names.
fn lane_name(t: &Timeline, node: usize) -> Cow<'_, str> {
    match t.nodes.get(node) {
        Some(name) => Cow::Borrowed(name.as_str()),
        None => Cow::Owned(format!("?{node}")),
    }
}

/// The first line of `s`, cut to `max` characters with an ellipsis if anything was lost.
fn trunc(s: &str, max: usize) -> Cow<'_, str> {
    let line = s.lines().next().unwrap_or("");
    let more_lines = line.len() < s.trim_end().len();
    match line.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if line.chars().count() > max => Cow::Owned(format!("{}…", &line[..cut])),
        _ if more_lines => Cow::Owned(format!("{line} …")),
        _ => Cow::Borrowed(line),
    }
}

/// A number with at most one decimal, and none when it is whole, to keep files small.
struct N(f64);

impl fmt::Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 10.0).round() as i64;
        let (sign, a) = if tenths < 0 {
            ("-", tenths.unsigned_abs())
        } else {
            ("", tenths.unsigned_abs())
        };
        if a % 10 == 0 {
            write!(f, "{sign}{}", a / 10)
        } else {
            write!(f, "{sign}{}.{}", a / 10, a % 10)
        }
    }
}

/// The end of a stretch, or "end of run" if it had none.
struct Until(Option<Instant>);

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at) => write!(f, "{at}"),
            None => f.write_str("end of run"),
        }
    }
}

/// Text made safe for XML content and attribute values. Control characters XML 1.0 does
/// not allow become U+FFFD, because one stray byte in a label would otherwise make the
/// browser refuse the whole file.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&apos;",
                '\n' | '\t' | '\r' => continue,
                '\u{FFFE}' | '\u{FFFF}' => "\u{FFFD}",
                c if c.is_control() => "\u{FFFD}",
                _ => continue,
            };
            f.write_str(&s[start..i])?;
            f.write_str(rep)?;
            start = i + c.len_utf8();
        }
        f.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::MAX_MESSAGES;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// Three nodes, delivered and dropped frames, a crash, a pause, a cut, and verdicts.
    fn sample() -> Timeline {
        let names = ["n1", "n2", "n3"].map(String::from).to_vec();
        let mut t = Timeline::new("election <&> \"quotes\" 'too'", 7, names);
        let delivered = [
            (0, 1, 100, 104),
            (0, 2, 100, 106),
            (1, 0, 110, 115),
            (2, 2, 300, 301),
        ];
        for (from, to, sent, arrived) in delivered {
            let k = t.send(from, to, ms(sent), "0x0201".into(), None);
            t.arrive(k.expect("room"), ms(arrived), None);
        }
        t.send(0, 1, ms(2500), "0x0202".into(), Some("partition".into()));
        let k = t.send(2, 1, ms(2100), "0x0203".into(), None);
        t.arrive(k.expect("room"), ms(2110), Some("receiver crashed".into()));
        t.send(1, 2, ms(9990), "0x0204 <in flight>".into(), None);
        t.begin_span(1, SpanKind::Crashed, ms(2000));
        t.end_span(1, SpanKind::Crashed, ms(4000));
        t.begin_span(2, SpanKind::Paused, ms(6000));
        t.recut(ms(2400), Some("{n1} {n2 n3}".into()));
        t.end_cuts(ms(5000));
        t.mark(
            ms(2400),
            None,
            MarkKind::Fault,
            "partition {n1} {n2 n3}".into(),
        );
        t.mark(
            ms(50),
            Some(0),
            MarkKind::Event,
            "Elected { term: 1 }".into(),
        );
        t.mark(ms(2000), Some(1), MarkKind::Fault, "crash".into());
        t.mark(ms(700), Some(2), MarkKind::Client, "open stream 1".into());
        t.mark(
            ms(800),
            Some(0),
            MarkKind::Effect,
            "effect 3 Persist".into(),
        );
        t.mark(ms(7000), None, MarkKind::Pass, "PASS liveness".into());
        t.mark(
            ms(9000),
            None,
            MarkKind::Fail,
            "FAIL safety: two leaders <&> in term 3".into(),
        );
        t.end = ms(10_000);
        t
    }

    /// Checks that every `<tag>` is closed by a matching `</tag>` (or self-closed), that
    /// no raw `<` or stray `&` sits in text, skipping declarations and comments. Returns
    /// what is wrong, if anything.
    fn balance(doc: &str) -> Result<(), String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = doc;
        loop {
            let Some(lt) = rest.find('<') else {
                check_entities(rest)?;
                break;
            };
            check_entities(&rest[..lt])?;
            let tail = &rest[lt..];
            if let Some(body) = tail.strip_prefix("<!--") {
                let end = body.find("-->").ok_or("unclosed comment")?;
                rest = &body[end + 3..];
                continue;
            }
            if tail.starts_with("<?") || tail.starts_with("<!") {
                let end = tail.find('>').ok_or("unclosed declaration")?;
                rest = &tail[end + 1..];
                continue;
            }
            let end = tail
                .find('>')
                .ok_or_else(|| format!("unclosed tag at {}", &tail[..tail.len().min(40)]))?;
            let inner = &tail[1..end];
            if inner.contains('<') {
                return Err(format!("raw < inside tag: {inner}"));
            }
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !inner.ends_with('/') {
                let name = inner
                    .split(|c: char| c.is_whitespace())
                    .next()
                    .unwrap_or("");
                if name.is_empty() {
                    return Err("empty tag name".into());
                }
                stack.push(name);
            } else {
                check_entities(inner)?;
            }
            // Script and style bodies are text, but ours contain no `<`, so they parse as such.
            rest = &tail[end + 1..];
        }
        match stack.last() {
            None => Ok(()),
            Some(open) => Err(format!("<{open}> never closed ({} open)", stack.len())),
        }
    }

    fn check_entities(text: &str) -> Result<(), String> {
        for (i, _) in text.match_indices('&') {
            let tail = &text[i..];
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| tail.starts_with(e));
            if !ok {
                return Err(format!("stray & at {}", &tail[..tail.len().min(20)]));
            }
        }
        Ok(())
    }

    fn arrows(doc: &str) -> usize {
        doc.matches("class=\"msg").count()
    }

    #[test]
    fn balance_checker_catches_mistakes() {
        assert!(balance("<a><b/></a>").is_ok());
        assert!(balance("<?xml version=\"1.0\"?><!-- x --><a>t &amp; u</a>").is_ok());
        assert!(balance("<a><b></a>").is_err());
        assert!(balance("<a>").is_err());
        assert!(balance("<a></b>").is_err());
        assert!(balance("<a>x & y</a>").is_err());
        assert!(balance("<a>x < y</a>").is_err());
    }

    #[test]
    fn svg_is_a_balanced_standalone_document() {
        let svg = render_svg(&sample());
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{}",
            &svg[..80]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        balance(&svg).unwrap();
    }

    #[test]
    fn one_label_per_lane() {
        let svg = render_svg(&sample());
        assert_eq!(svg.matches("class=\"lane-label\"").count(), 3);
        for name in ["n1", "n2", "n3"] {
            assert!(svg.contains(&format!(
                "text-anchor=\"end\"><title>{name}</title>{name}</text>"
            )));
        }
    }

    #[test]
    fn one_arrow_per_message_and_drops_drawn_apart() {
        let t = sample();
        let svg = render_svg(&t);
        assert_eq!(arrows(&svg), t.messages.len());
        let dropped = t.messages.iter().filter(|m| is_dropped(m)).count();
        assert_eq!(dropped, 3);
        assert_eq!(svg.matches("class=\"msg dropped\"").count(), dropped);
        assert!(svg.contains("dropped: partition"));
        assert!(svg.contains(": receiver crashed"));
        assert!(svg.contains("dropped at "));
        assert!(svg.contains("never arrived"));
    }

    #[test]
    fn spans_cuts_and_verdicts_are_drawn() {
        let svg = render_svg(&sample());
        assert_eq!(
            svg.matches("<rect class=\"crashed\"").count(),
            2,
            "one span plus the legend"
        );
        assert_eq!(
            svg.matches("<rect class=\"paused\"").count(),
            2,
            "one span plus the legend"
        );
        assert_eq!(svg.matches("<rect class=\"cut\"").count(), 1);
        assert!(svg.contains("cut: {n1} {n2 n3}"));
        assert!(svg.contains("paused\n6.000000s – end of run"));
        assert!(svg.contains("class=\"verdict pass\" x1="));
    }

    #[test]
    fn fail_marks_use_the_fail_colour() {
        let t = sample();
        let svg = render_svg(&t);
        assert!(svg.contains("<line class=\"verdict fail\""));
        let fail_line = svg
            .lines()
            .find(|l| l.starts_with("<line class=\"verdict fail\""))
            .expect("a fail line");
        assert!(
            fail_line.contains(&format!("stroke=\"{FAIL}\"")),
            "{fail_line}"
        );
        assert!(svg.contains("class=\"strip fail\" x="));

        let mut passing = t.clone();
        passing.marks.retain(|m| m.kind != MarkKind::Fail);
        let svg = render_svg(&passing);
        assert!(!svg.contains("verdict fail"));
        assert!(!svg.contains("strip fail"));
    }

    #[test]
    fn text_is_escaped() {
        let svg = render_svg(&sample());
        assert!(svg.contains("election &lt;&amp;&gt; &quot;quotes&quot; &apos;too&apos;"));
        assert!(svg.contains("two leaders &lt;&amp;&gt; in term 3"));
        assert!(svg.contains("0x0204 &lt;in flight&gt;"));
        assert!(!svg.contains("<&>"));
        assert!(!svg.contains("<in flight>"));

        let mut t = Timeline::new("ctl\u{1}char", 1, vec!["a&b".into()]);
        t.end = ms(1);
        let svg = render_svg(&t);
        assert!(svg.contains("ctl\u{FFFD}char"));
        assert!(svg.contains("a&amp;b"));
        balance(&svg).unwrap();
    }

    #[test]
    fn header_reports_run_and_omissions() {
        let mut t = sample();
        let svg = render_svg(&t);
        assert!(svg.contains("seed 7 · ends at 10.000000s"));
        assert!(!svg.contains("not drawn"));
        t.messages_omitted = 12;
        t.marks_omitted = 3;
        let svg = render_svg(&t);
        assert!(svg.contains("12 messages not drawn"));
        assert!(svg.contains("3 marks not drawn"));
    }

    #[test]
    fn odd_timelines_still_render() {
        let empty = Timeline::default();
        let no_msgs = Timeline::new("idle", 1, vec!["a".into(), "b".into()]);
        let mut late = Timeline::new("late", 2, vec!["a".into(), "b".into()]);
        late.end = ms(100);
        let k = late.send(0, 1, ms(90), "x".into(), None).expect("room");
        late.arrive(k, ms(150), None);
        let mut stray = Timeline::new("stray", 3, vec!["a".into()]);
        stray.send(0, 5, ms(1), "x".into(), None);
        stray.begin_span(9, SpanKind::Crashed, ms(0));
        stray.mark(Instant::MAX, Some(4), MarkKind::Event, "never".into());
        for t in [&empty, &no_msgs, &late, &stray] {
            let svg = render_svg(t);
            balance(&svg).unwrap_or_else(|e| panic!("{}: {e}", t.scenario));
            assert_eq!(arrows(&svg), t.messages.len(), "{}", t.scenario);
            assert!(
                svg.contains("width=\"1200\""),
                "{}: minimum width",
                t.scenario
            );
            balance(&render_html(t)).unwrap();
        }
        let svg = render_svg(&late);
        assert!(svg.contains("class=\"msg late\""));
        assert!(svg.contains("after the run ended"));
        assert!(svg.contains("run ended at 0.100000s"));
        assert_eq!(
            render_svg(&stray).matches("class=\"lane-label\"").count(),
            2
        );
    }

    #[test]
    fn html_wraps_exactly_one_balanced_svg() {
        let html = render_html(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(html.contains("<title>election &lt;&amp;&gt;"));
        assert!(html.contains("id=\"fl-scroll\""));
        assert!(!html.contains("src=\""), "nothing loaded from elsewhere");
        assert!(
            !html.contains("href=\"http"),
            "nothing loaded from elsewhere"
        );
        balance(&html).unwrap();
    }

    #[test]
    fn ticks_are_round_and_about_ten() {
        for domain in [
            1_000_000u64,
            1_000_001,
            3_700_000,
            7_300_000_000,
            10_000_000_000,
            3_600_000_000_000,
            u64::MAX,
        ] {
            let t = Ticks::new(domain, 3000.0);
            let count = domain / t.major + 1;
            assert!(
                (4..=15).contains(&count),
                "{domain}: {count} ticks of {}",
                t.major
            );
            let mantissa = t.major / 10u64.pow(t.major.ilog10());
            assert!([1, 2, 5].contains(&mantissa), "{}", t.major);
        }
        let t = Ticks::new(10_000_000_000, 1000.0);
        assert_eq!((t.major, t.minor), (1_000_000_000, None));
        assert_eq!(t.label(1_000_000_000), "1s");
        let t = Ticks::new(6_000_000_000, 20_000.0);
        assert_eq!(t.major, 500_000_000);
        assert_eq!(t.minor, Some(50_000_000));
        assert_eq!(t.label(1_500_000_000), "1.5s");
        assert_eq!(t.label(1_550_000_000), "1.55s");
        let t = Ticks::new(30_000_000, 1000.0);
        assert_eq!(t.label(4_000_000), "4ms");
        assert_eq!(domain(&Timeline::default()), 1_000_000_000);
    }

    #[test]
    fn numbers_have_at_most_one_decimal() {
        assert_eq!(N(1.0).to_string(), "1");
        assert_eq!(N(1.25).to_string(), "1.3");
        assert_eq!(N(-0.44).to_string(), "-0.4");
        assert_eq!(N(-0.04).to_string(), "0");
        assert_eq!(N(123.96).to_string(), "124");
    }

    #[test]
    fn twenty_thousand_messages_render() {
        let names = (1..=5).map(|i| format!("n{i}")).collect();
        let mut t = Timeline::new("busy", 9, names);
        for i in 0..(MAX_MESSAGES as u64 + 50) {
            let (from, to) = ((i % 5) as usize, ((i + 1 + i / 7) % 5) as usize);
            let sent = Instant::from_nanos(i * 3_000_000);
            if let Some(k) = t.send(from, to, sent, "0x0201".into(), None) {
                if i % 13 == 0 {
                    t.arrive(k, sent, Some("lost".into()));
                } else {
                    t.arrive(k, Instant::from_nanos(sent.as_nanos() + 2_000_000), None);
                }
            }
        }
        t.end = Instant::from_secs(61);
        let svg = render_svg(&t);
        assert_eq!(arrows(&svg), MAX_MESSAGES);
        assert!(svg.contains("50 messages not drawn"));
        assert!(svg.contains(&format!("width=\"{}\"", N(MAX_WIDTH))));
        balance(&svg).unwrap();
    }
}
