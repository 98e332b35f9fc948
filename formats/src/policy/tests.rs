use super::*;

fn sample() -> Policy {
    Policy {
        name: "gold".into(),
        version: 3,
        rpo_target_secs: 30,
        retention_secs: 86_400,
        app_consistent_every_secs: 900,
        freeze: vec!["/data".into()],
        pre_hook: Some("/etc/rewind/pre.sh".into()),
        post_hook: None,
        level: 3,
        bandwidth: "mon-fri 08:00-18:00=20MiB/s, *=unlimited".parse().unwrap(),
        spool_mib: 4096,
        initial_sync_window: BandwidthSchedule::default(),
        drill_every_secs: 0,
        ltr_hourly_days: 0,
        ltr_daily_weeks: 0,
        ltr_monthly_months: 0,
    }
}

#[test]
fn a_policy_round_trips_through_a_control_arg() {
    let p = sample();
    p.validate().unwrap();
    let arg = p.to_control_arg();
    assert!(arg.len() < crate::MAX_MESSAGE_LEN, "{} bytes", arg.len());
    assert_eq!(Policy::from_control_arg(&arg).unwrap(), p);
    assert!(
        arg.contains("\"mon-fri 08:00-18:00=20MiB/s, *=unlimited\""),
        "{arg}"
    );
}

/// A field a case expects to be named, and how the case breaks the sample.
type Case = (&'static str, Box<dyn Fn(&mut Policy)>);

#[test]
fn bad_fields_are_named() {
    let cases: Vec<Case> = vec![
        ("name", Box::new(|p| p.name = "../x".into())),
        ("version", Box::new(|p| p.version = 0)),
        ("rpo_target_secs", Box::new(|p| p.rpo_target_secs = 0)),
        ("retention_secs", Box::new(|p| p.retention_secs = 0)),
        ("level", Box::new(|p| p.level = 0)),
        ("level", Box::new(|p| p.level = 22)),
        ("freeze", Box::new(|p| p.freeze = vec!["data".into()])),
        ("freeze", Box::new(|p| p.freeze = vec!["/a/../b".into()])),
        ("freeze", Box::new(|p| p.freeze.clear())),
        ("pre_hook", Box::new(|p| p.pre_hook = Some("pre.sh".into()))),
    ];
    for (field, change) in cases {
        let mut p = sample();
        change(&mut p);
        let err = p.validate().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn a_control_arg_that_is_not_a_policy_is_refused() {
    assert_eq!(Policy::from_control_arg("{").unwrap_err().field, "json");
    let mut v: serde_json::Value = serde_json::from_str(&sample().to_control_arg()).unwrap();
    v["surprise"] = 1.into();
    assert_eq!(
        Policy::from_control_arg(&v.to_string()).unwrap_err().field,
        "json"
    );
    v.as_object_mut().unwrap().remove("surprise");
    v["level"] = 99.into();
    assert_eq!(
        Policy::from_control_arg(&v.to_string()).unwrap_err().field,
        "level"
    );
}

#[test]
fn drill_every_secs_defaults_to_off_is_left_out_when_off_and_is_bounded() {
    let p = sample();
    let arg = p.to_control_arg();
    // Off: not in the JSON, so an agent that predates the field still takes the policy.
    assert!(!arg.contains("drill_every_secs"), "{arg}");
    assert_eq!(Policy::from_control_arg(&arg).unwrap().drill_every_secs, 0);
    let mut d = sample();
    d.drill_every_secs = 7 * 86_400;
    let arg = d.to_control_arg();
    assert!(arg.contains("\"drill_every_secs\":604800"), "{arg}");
    assert_eq!(Policy::from_control_arg(&arg).unwrap(), d);
    d.drill_every_secs = MAX_DRILL_EVERY_SECS + 1;
    assert_eq!(d.validate().unwrap_err().field, "drill_every_secs");
}

#[test]
fn ltr_tiers_default_off_are_left_out_when_off_and_are_bounded() {
    let mut p = sample();
    let arg = p.to_control_arg();
    assert!(!arg.contains("ltr_"), "{arg}");
    assert!(!p.ltr_on());
    p.ltr_hourly_days = 2;
    p.ltr_monthly_months = 12;
    let back = Policy::from_control_arg(&p.to_control_arg()).unwrap();
    assert_eq!((back.ltr_hourly_days, back.ltr_monthly_months), (2, 12));
    assert!(back.ltr_on());
    p.ltr_daily_weeks = MAX_LTR_DAILY_WEEKS + 1;
    assert_eq!(p.validate().unwrap_err().field, "ltr_daily_weeks");
}
