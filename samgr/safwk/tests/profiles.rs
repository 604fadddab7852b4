//! SA profiles in the shapes OpenHarmony's services ship (`tests/profiles/`:
//! both key spellings, xml-era string values, on-demand events, keys Accord
//! does not act on, the shared case `sa-profile-current-keys-rejected`), and
//! a structure-aware property test: generated valid profiles in every
//! spelling and value form parse to what was generated, and mutations of
//! them never panic and name the file when they fail.

use std::path::Path;
use std::time::Duration;

use accord_safwk::profile::{Profile, SaProfile, DEFAULT_DEPEND_TIMEOUT};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn sa(id: u32) -> SaProfile {
    SaProfile {
        id,
        run_on_create: false,
        distributed: false,
        dump_level: 1,
        depend: vec![],
        depend_timeout: DEFAULT_DEPEND_TIMEOUT,
        unload_after: None,
        permission: String::new(),
        capability: String::new(),
    }
}

fn ignored(p: &Profile) -> Vec<(&str, bool)> {
    p.ignored.iter().map(|k| (k.key.as_str(), k.known)).collect()
}

#[test]
fn every_profile_of_the_corpus_loads_with_its_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles");
    let all: Vec<Profile> = Profile::load_dir(&dir).into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
    let by = |name: &str| all.iter().find(|p| p.process == name).unwrap_or_else(|| panic!("no profile {name}"));
    assert_eq!(all.len(), 8);

    // The shared case: current-form keys no longer reject the file.
    let p = by("powermgr");
    assert_eq!(p.abilities, vec![SaProfile { run_on_create: true, ..sa(3301) }]);
    let mut keys = ignored(p);
    keys.sort();
    assert_eq!(keys, [("systemability.libpath", true), ("systemability.min_hdi_proxy_version", true)]);
    assert!(p.warnings().all(|w| w.contains("01_powermgr_case.json: systemability.")), "warnings name the file");

    let p = by("storage_manager");
    assert_eq!(p.abilities, vec![SaProfile { unload_after: Some(Duration::from_secs(180)), ..sa(5003) }]);
    assert!(ignored(p).contains(&("systemability.stop-on-demand.recycle-delaytime", true)), "{:?}", ignored(p));
    assert!(ignored(p).contains(&("systemability.start-on-demand", true)));

    let p = by("softbus_server");
    assert_eq!(p.abilities, vec![SaProfile { run_on_create: true, depend: vec![3299, 1401], depend_timeout: Duration::from_secs(60), ..sa(4700) }]);
    let mut keys: Vec<&str> = ignored(p).iter().map(|k| k.0).collect();
    keys.sort();
    assert_eq!(keys, ["systemability.auto-restart", "systemability.bootphase", "systemability.critical", "systemability.libpath"]);

    let p = by("time_service");
    assert_eq!(p.abilities, vec![SaProfile { run_on_create: true, ..sa(3702) }], "stop-on-demand without unreferenced-unload keeps it");
    for k in [
        "systemability.recycle-strategy",
        "systemability.extension",
        "systemability.cache-common-event",
        "systemability.stop-on-demand.longtimeunused-unload",
        "systemability.stop-on-demand.settingswitch",
    ] {
        assert!(ignored(p).contains(&(k, true)), "{k}: {:?}", ignored(p));
    }

    let p = by("accesstoken_service");
    assert_eq!(
        p.abilities,
        vec![SaProfile {
            run_on_create: true,
            depend: vec![3299],
            depend_timeout: Duration::from_secs(6),
            permission: "ohos.permission.MANAGE_HAP_TOKENID".into(),
            ..sa(3503)
        }],
        "string values of the xml era"
    );

    let p = by("camera_service");
    assert_eq!(p.abilities, vec![SaProfile { depend_timeout: Duration::from_secs(4), unload_after: Some(Duration::from_secs(20)), ..sa(3008) }]);
    assert!(ignored(p).contains(&("kill-process", true)) && ignored(p).contains(&("systemability.multi-instance", true)), "{:?}", ignored(p));

    let p = by("both_sa");
    assert_eq!(
        p.abilities,
        vec![SaProfile { run_on_create: true, dump_level: 2, depend_timeout: Duration::from_secs(2), ..sa(9700) }],
        "the '-' spelling wins"
    );
    assert!(ignored(p).contains(&("systemability.depend_time_out", true)) && ignored(p).contains(&("systemability.dump_level", true)), "{:?}", ignored(p));
    assert!(ignored(p).contains(&("systemability.future-key-nobody-knows", false)), "unknown keys are reported as unknown");

    let p = by("foundation");
    assert_eq!(p.abilities.iter().map(|a| a.id).collect::<Vec<_>>(), [180, 182, 401, 501]);
    assert_eq!(p.ability(182).map(|a| (a.depend.clone(), a.depend_timeout)), Some((vec![180], DEFAULT_DEPEND_TIMEOUT)), "0 means the default");
    assert_eq!(p.ability(501).map(|a| (a.depend.clone(), a.distributed, a.dump_level)), Some((vec![401, 180], true, 2)));
    assert_eq!(ignored(p).iter().filter(|k| k.0 == "systemability.libpath").count(), 1, "reported once per file");
}

// --- structure-aware generation -------------------------------------------

/// One SA as generated, with the encodings chosen for it.
#[derive(Debug, Clone)]
struct Gen {
    want: SaProfile,
    json: Map<String, Value>,
    extras: Vec<(String, bool)>,
}

const KNOWN_EXTRA: &[&str] = &[
    "libpath",
    "bootphase",
    "auto-restart",
    "start-on-demand",
    "recycle-strategy",
    "extension",
    "cache-common-event",
    "min_hdi_proxy_version",
    "multi-instance",
    "critical",
    "in-process",
];

fn key(k: &str, underscore: bool) -> String {
    if underscore {
        k.replace('-', "_")
    } else {
        k.to_owned()
    }
}

fn enc_u32(v: u32, form: u8) -> Value {
    match form % 3 {
        0 => json!(v),
        1 => json!(v.to_string()),
        _ => json!(f64::from(v)),
    }
}

fn enc_bool(v: bool, form: u8) -> Value {
    match form % 3 {
        0 => json!(v),
        1 => json!(v.to_string()),
        _ => json!(u8::from(v)),
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from), "[a-z0-9 .-]{0,10}".prop_map(Value::from)];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z-]{1,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn gen_sa(id: u32)(
        run in any::<bool>(), dist in any::<bool>(), dump in 0u32..5, depend in prop::collection::vec(1u32..=0xFF_FFFF, 0..4),
        timeout in prop::option::of(1u32..200_000), unload in prop::option::of((any::<bool>(), prop::option::of(0u32..=300_000))),
        permission in prop::option::of("ohos\\.permission\\.[A-Z_]{1,30}"),
        spell in prop::collection::vec(any::<bool>(), 10), form in prop::collection::vec(any::<u8>(), 12),
        extras in prop::collection::vec((prop::sample::select(KNOWN_EXTRA), any_json()), 0..4),
        unknown in prop::collection::vec(("x-[a-z]{1,8}", any_json()), 0..3),
    ) -> Gen {
        let mut want = SaProfile { run_on_create: run, distributed: dist, dump_level: dump, depend: depend.clone(), ..sa(id) };
        let mut o = Map::new();
        o.insert("name".into(), if form[0] % 2 == 0 { json!(id) } else { json!(id.to_string()) });
        o.insert(key("run-on-create", spell[0]), enc_bool(run, form[1]));
        o.insert("distributed".into(), enc_bool(dist, form[2]));
        o.insert(key("dump-level", spell[1]), enc_u32(dump, form[3]));
        o.insert("depend".into(), Value::Array(depend.iter().enumerate().map(|(i, d)| enc_u32(*d, form[4].wrapping_add(i as u8) % 2)).collect()));
        if let Some(ms) = timeout {
            o.insert(key("depend-time-out", spell[2]), enc_u32(ms, form[5]));
            want.depend_timeout = Duration::from_millis(u64::from(ms));
        }
        if let Some((unref, delay)) = unload {
            let mut s = Map::new();
            s.insert(key("unreferenced-unload", spell[3]), enc_bool(unref, form[6]));
            if let Some(ms) = delay {
                s.insert("delay".into(), enc_u32(ms, form[7]));
            }
            s.insert("recycle-delaytime".into(), json!(form[8]));
            o.insert(key("stop-on-demand", spell[4]), Value::Object(s));
            want.unload_after = unref.then(|| Duration::from_millis(u64::from(delay.unwrap_or(20_000))));
        }
        if let Some(p) = &permission {
            o.insert("permission".into(), json!(p));
            want.permission = p.clone();
        }
        let mut ex = Vec::new();
        for (k, v) in extras.into_iter().map(|(k, v)| (k.to_owned(), v)).chain(unknown) {
            if o.contains_key(&k) {
                continue;
            }
            ex.push((k.clone(), KNOWN_EXTRA.contains(&k.as_str())));
            o.insert(k, v);
        }
        Gen { want, json: o, extras: ex }
    }
}

fn gen_profile() -> impl Strategy<Value = (String, Vec<Gen>)> {
    ("[a-z][a-z0-9_]{0,20}", prop::collection::btree_set(1u32..=0xFF_FFFF, 1..5)).prop_flat_map(|(process, ids)| {
        let sas: Vec<_> = ids.into_iter().map(gen_sa).collect();
        (Just(process), sas)
    })
}

fn text(process: &str, sas: &[Gen]) -> String {
    json!({"process": process, "systemability": sas.iter().map(|g| Value::Object(g.json.clone())).collect::<Vec<_>>()}).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_profiles_parse_to_what_was_generated((process, sas) in gen_profile()) {
        let p = Profile::parse(&text(&process, &sas), "gen.json").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&p.process, &process);
        prop_assert_eq!(p.abilities.clone(), sas.iter().map(|g| g.want.clone()).collect::<Vec<_>>());
        for g in &sas {
            for (k, known) in &g.extras {
                let place = format!("systemability.{k}");
                prop_assert!(p.ignored.iter().any(|i| i.key == place && i.known == *known), "{} not reported: {:?}", place, p.ignored);
            }
        }
        let mut keys: Vec<&str> = p.ignored.iter().map(|k| k.key.as_str()).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        prop_assert_eq!(n, keys.len(), "each key once");
    }

    #[test]
    fn mutated_profiles_never_panic_and_errors_name_the_file(
        (process, sas) in gen_profile(), which in any::<prop::sample::Index>(), field in any::<prop::sample::Index>(), how in 0u8..4, value in any_json(),
    ) {
        let mut sas = sas;
        let g = which.get_mut(&mut sas);
        let keys: Vec<String> = g.json.keys().cloned().collect();
        let k = field.get(&keys).clone();
        match how {
            0 => { g.json.remove(&k); }
            1 => { g.json.insert(k, value); }
            2 => { let v = g.json.remove(&k).unwrap_or(Value::Null); g.json.insert(format!("{k}_"), v); }
            _ => { g.json.insert(k.replace('-', "_"), value); }
        }
        match Profile::parse(&text(&process, &sas), "mut.json") {
            Ok(p) => prop_assert!(!p.abilities.is_empty()),
            Err(e) => prop_assert!(e.to_string().starts_with("mut.json: "), "{}", e),
        }
    }
}
