//! The end of every report: the spread of each bar's runs, then one `bar NAME: VALUE (want OP
//! BAR)` line per bar. Bar names and the line format are what readers and scripts grep for; they
//! do not change.

/// One target of a bench.
pub struct Bar {
    /// e.g. `apply-seq-1m`.
    pub name: &'static str,
    /// The median as printed, unit included (`0.87x`, `15.20`, `0.112 s`).
    pub value: String,
    /// The target, e.g. `>= 0.8` or `< 50`.
    pub want: &'static str,
    /// The smallest and largest run as printed (unit included), when the bar has runs.
    pub spread: Option<String>,
}

/// Prints the spread line (if any bar has one), a blank line and the bar lines.
pub fn print_bars(runs: usize, bars: &[Bar]) {
    let spreads: Vec<String> = bars
        .iter()
        .filter_map(|b| b.spread.as_ref().map(|s| format!("{} {s}", b.name)))
        .collect();
    if !spreads.is_empty() {
        println!(
            "spread of the bars over {runs} runs (min-max): {}",
            spreads.join(", ")
        );
    }
    println!();
    for b in bars {
        println!("bar {}: {} (want {})", b.name, b.value, b.want);
    }
}
