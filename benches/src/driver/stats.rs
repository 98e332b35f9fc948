//! Run results, their medians and spreads, and numbers printed the way the reports always have.

use serde_json::Value;

use crate::stats::percentile;

/// How a series' values were written down per run, which is also how its median prints: with a
/// fixed number of decimals (and rounded to them before any median or ratio, as when the script
/// kept them in text files), or as given (`jq` printed the number as it was).
#[derive(Clone, Copy, Debug)]
pub enum Form {
    Fixed(usize),
    Raw,
}

/// The results of one measurement, one per run.
#[derive(Clone, Debug)]
pub struct Series {
    form: Form,
    values: Vec<f64>,
}

impl Series {
    pub fn fixed(decimals: usize) -> Series {
        Series {
            form: Form::Fixed(decimals),
            values: Vec::new(),
        }
    }

    pub fn raw() -> Series {
        Series {
            form: Form::Raw,
            values: Vec::new(),
        }
    }

    /// Adds a run's result (rounded as the form says); returns it as written down.
    pub fn push(&mut self, v: f64) -> f64 {
        let v = match self.form {
            Form::Fixed(d) => round(v, d),
            Form::Raw => v,
        };
        self.values.push(v);
        v
    }

    /// Adds a run's result if there is one (a ratio of a zero baseline has none).
    pub fn push_some(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.push(v);
        }
    }

    /// The median (the lower middle of an even count), `None` without runs.
    pub fn median(&self) -> Option<f64> {
        let mut v = self.values.clone();
        (!v.is_empty()).then(|| percentile(&mut v, 50.0))
    }

    /// The median as the series writes its values, or `n/a`.
    pub fn median_text(&self) -> String {
        self.text(self.median())
    }

    /// A value of this series as the series writes them.
    pub fn text(&self, v: Option<f64>) -> String {
        match (v, self.form) {
            (None, _) => "n/a".to_string(),
            (Some(v), Form::Fixed(d)) => format!("{v:.d$}"),
            (Some(v), Form::Raw) => format!("{v}"),
        }
    }

    /// The smallest and the largest result.
    pub fn spread(&self) -> Option<(f64, f64)> {
        let min = self.values.iter().copied().reduce(f64::min)?;
        let max = self.values.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }

    /// `MIN-MAX` as the series writes its values, or `n/a`.
    pub fn spread_text(&self) -> String {
        match self.spread() {
            Some((lo, hi)) => format!("{}-{}", self.text(Some(lo)), self.text(Some(hi))),
            None => "n/a".to_string(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// One measurement against its baseline, run by run: both series and each run's ratio (ours /
/// theirs), whose median and spread a bar reports.
#[derive(Clone, Debug)]
pub struct Versus {
    pub ours: Series,
    pub theirs: Series,
    pub ratio: Series,
}

impl Versus {
    pub fn new(ours: Series, theirs: Series) -> Versus {
        Versus {
            ours,
            theirs,
            ratio: Series::fixed(2),
        }
    }

    /// Adds one run; returns both figures as written down.
    pub fn push(&mut self, ours: f64, theirs: f64) -> (f64, f64) {
        let (o, t) = (self.ours.push(ours), self.theirs.push(theirs));
        self.ratio.push_some(ratio(Some(o), Some(t)));
        (o, t)
    }

    /// The median ratio as bars print it (`1.23x`).
    pub fn ratio_text(&self) -> String {
        format!("{}x", self.ratio.median_text())
    }

    /// The ratio's spread as bars print it (`0.98-1.30x`), if any run had one.
    pub fn ratio_spread(&self) -> Option<String> {
        (!self.ratio.is_empty()).then(|| format!("{}x", self.ratio.spread_text()))
    }
}

/// `v` rounded to `decimals` places (as printf would print it).
pub fn round(v: f64, decimals: usize) -> f64 {
    format!("{v:.decimals$}").parse().unwrap_or(v)
}

/// `v` with `decimals` places, or `n/a`.
pub fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "n/a".to_string(),
    }
}

/// `a / b` rounded to two places; `None` if either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(round(a / b, 2)),
        _ => None,
    }
}

/// A ratio with two places, or `n/a`.
pub fn ratio_text(a: Option<f64>, b: Option<f64>) -> String {
    fmt(ratio(a, b), 2)
}

/// A JSON value as `jq -r` prints it (strings bare, numbers shortest, `null` for nothing).
pub fn jq_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// The sum of every number under key `key` in any object inside `v` (jq's
/// `[.. | objects | .KEY? // empty | numbers] | add`), `None` if there is none.
pub fn sum_key(v: &Value, key: &str) -> Option<f64> {
    fn walk(v: &Value, key: &str, acc: &mut Option<f64>) {
        match v {
            Value::Object(map) => {
                if let Some(n) = map.get(key).and_then(Value::as_f64) {
                    *acc = Some(acc.unwrap_or(0.0) + n);
                }
                map.values().for_each(|c| walk(c, key, acc));
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, key, acc)),
            _ => {}
        }
    }
    let mut acc = None;
    walk(v, key, &mut acc);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_spreads_and_ratios_print_like_the_script() {
        let mut s = Series::fixed(1);
        assert_eq!(s.median_text(), "n/a");
        for v in [3.04, 1.0, 2.26, 9.0] {
            s.push(v);
        }
        assert_eq!(s.median_text(), "2.3");
        assert_eq!(s.spread_text(), "1.0-9.0");
        let mut r = Series::raw();
        r.push(12.0);
        r.push(3.5);
        assert_eq!(r.median_text(), "3.5");
        assert_eq!(r.text(Some(12.0)), "12");
        assert_eq!(ratio_text(Some(1.0), Some(3.0)), "0.33");
        assert_eq!(ratio_text(Some(1.0), Some(0.0)), "n/a");
        assert_eq!(ratio_text(None, Some(1.0)), "n/a");
        assert_eq!(fmt(Some(1234.56), 0), "1235");
    }

    #[test]
    fn json_like_jq() {
        let v: Value = serde_json::json!({
            "groups": [{"disks": [{"index_bytes": 10, "extents": 4}, {"index_bytes": 6}]}],
            "extents": null
        });
        assert_eq!(sum_key(&v, "index_bytes"), Some(16.0));
        assert_eq!(sum_key(&v, "extents"), Some(4.0));
        assert_eq!(sum_key(&v, "nothing"), None);
        assert_eq!(jq_text(v.get("extents")), "null");
        assert_eq!(jq_text(Some(&serde_json::json!("done"))), "done");
        assert_eq!(jq_text(Some(&serde_json::json!(3))), "3");
    }
}
