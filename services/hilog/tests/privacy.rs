//! The privacy switch end to end: `hilog -p off|on` sets
//! `hilog.private.on` in a real init's parameter service, and the layer
//! reads it from init's shared table (this binary's first read opens it,
//! hence a test file of its own).

use std::time::Duration;

#[test]
fn hilog_p_switches_what_the_layer_shows() {
    let mut init = accord_testkit::Fixture::new(r#"{"services": []}"#, &[]);
    init.boot();
    let pid = init.init_pid().expect("init's pid");
    std::env::set_var("PARAM_AREA", format!("/proc/{pid}/root/dev/__parameters__/param_area"));
    std::env::set_var("PARAM_SOCKET", init.socket());
    assert!(accord_hilog::layer::privacy_on(), "privacy is on by default");
    let hilog = |v: &str| accord_hilog::cli::main(vec!["hilog".into(), "-p".into(), v.into()]);
    // Not for the shell uid (or any other): root only, as the DAC's
    // default for names no rule covers.
    let refused = init.client_as(2000, 2000).set("hilog.private.on", "false");
    assert!(refused.is_err(), "uid 2000 switched privacy off");
    assert!(accord_hilog::layer::privacy_on());
    hilog("off").expect("hilog -p off");
    assert!(init.wait_param("hilog.private.on", "false", Duration::from_secs(30)));
    assert!(!accord_hilog::layer::privacy_on(), "hilog -p off shows private fields");
    hilog("on").expect("hilog -p on");
    assert!(accord_hilog::layer::privacy_on());
    let err = hilog("maybe").expect_err("a bad value");
    assert!(err.to_string().contains("on or off"), "{err}");
}
