//! The documented example plan parses, and the module docs show exactly `example.toml`.

use std::path::Path;
use std::time::Duration;

use super::{Health, Plan};

const EXAMPLE: &str = include_str!("example.toml");

#[test]
fn the_documented_example_parses() {
    let p = Plan::parse(Path::new("example.toml"), EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "shop");
    let names: Vec<&str> = p.machines().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["db1", "web1"]);
    let web1 = &p.boot_groups[1].machines[0];
    assert_eq!(web1.boot.disks(), ["root", "data"]);
    assert_eq!(web1.timeout, Duration::from_secs(60));
    assert!(matches!(&web1.health, Health::Command(c) if c.starts_with("curl")));
    let stores = |g: &str| match g {
        "db1" => Ok(vec!["root".to_string()]),
        "web1" => Ok(vec!["root".to_string(), "data".to_string()]),
        _ => anyhow::bail!("unknown"),
    };
    p.check_groups(&stores).unwrap();
}

#[test]
fn the_module_docs_show_the_example() {
    let docs: String = include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    assert!(
        docs.contains(EXAMPLE),
        "mod.rs docs and example.toml differ"
    );
}
