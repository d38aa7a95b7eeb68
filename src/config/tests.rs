use super::*;

#[test]
fn empty_config_has_the_contract_defaults() {
    let c = Config::from_toml("").unwrap();
    assert!(c.kafka.is_none());
    assert_eq!(c.topics.commands, "rollback-commands");
    assert_eq!(c.topics.otlp_encoding, OtlpEncoding::Proto);
    assert_eq!(c.http_max_body, 4 << 20);
    let p = &c.default_policy;
    assert_eq!(p.objective, 0.999);
    assert_eq!(p.latency_threshold, Duration::from_millis(500));
    assert_eq!(p.windows.len(), 2);
    assert_eq!(
        p.lengths,
        vec![
            Duration::from_secs(60),
            Duration::from_secs(300),
            Duration::from_secs(1800)
        ]
    );
    assert_eq!(p.pair_index, vec![(0, 1), (1, 2)]);
    // the floors are optional: the sequential tests make a verdict valid
    assert_eq!(p.min_requests, 0);
    assert_eq!(p.warmup, Duration::from_secs(5));
    assert_eq!(p.confidence, 0.95);
    assert_eq!(p.rate_tests.len(), 2);
    assert_eq!(c.longest_window(), Duration::from_secs(1800));
}

#[test]
fn services_inherit_and_override() {
    let c = Config::from_toml(
        r#"
        [slo]
        min_requests = 50
        [slo.services.checkout]
        objective = 0.9995
        dry_run = true
        "#,
    )
    .unwrap();
    let p = c.policy("checkout");
    assert_eq!(p.objective, 0.9995);
    assert_eq!(p.min_requests, 50);
    assert!(p.dry_run);
    assert!(!c.policy("other").dry_run);
    assert_eq!(c.policy("other").min_requests, 50);
}

#[test]
fn kafka_table_present() {
    let c = Config::from_toml(
        "[kafka]\n[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"linger.ms\" = 2\n",
    )
    .unwrap();
    let k = c.kafka.unwrap();
    assert_eq!(k.brokers, "127.0.0.1:9092");
    assert_eq!(
        kafka_property_string(&k.properties["linger.ms"]).unwrap(),
        "2"
    );
}

fn err(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_key() {
    assert!(err("[slo]\nobjectiv = 0.9\n").contains("objectiv"));
    assert!(err("[slo]\nobjective = 1.5\n").contains("slo.objective"));
    assert!(err("[slo]\nwarmup = \"5x\"\n").contains("warmup"));
    assert!(err("[slo.services.a]\nconfidence = 0.2\n").contains("slo.services.a.confidence"));
    assert!(
        err("[slo]\nwindows = [{short = \"5m\", long = \"1m\", burn_rate = 2.0}]\n")
            .contains("slo.windows[0].long")
    );
    assert!(err("[guards]\nbreaker_max_rollbacks = 0\n").contains("guards.breaker_max_rollbacks"));
    assert!(err("[http]\nmax_body = \"lots\"\n").contains("http.max_body"));
    assert!(err("[http]\nlisten = \"nowhere\"\n").contains("http.listen"));
    assert!(err("[http]\nlisten = \"localhost\"\n").contains("http.listen"));
    assert!(err("[http]\nlisten = \"localhost:http\"\n").contains("http.listen"));
    let named = Config::from_toml("[http]\nlisten = \"localhost:9464\"\n").unwrap();
    assert!(named.http_listen.ip().is_loopback());
    assert_eq!(named.http_listen.port(), 9464);
    assert!(err("[topics]\notlp_encoding = \"otlp_xml\"\n").contains("otlp_encoding"));
    assert!(err("[nope]\n").contains("nope"));
    assert!(err("[slo]\ndry_run = true\n").contains("slo.dry_run"));
    assert!(err("[log]\nformat = \"xml\"\n").contains("format"));
    assert!(err("[topics]\ncommands = \"otlp_spans\"\n").contains("topics.commands"));
    assert!(err("[executor.templates]\ncanary = []\n").contains("executor.templates.canary"));
    assert!(
        err("[executor.templates]\nhelm = [\"helm\", \"rollback\", \"x-{service}\"]\n")
            .contains("whole arguments")
    );
    assert!(err("[executor.templates]\nhelm = [\"{service}\"]\n").contains("program"));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("4MiB"), Some(4 << 20));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("1 KB"), Some(1000));
    assert_eq!(parse_size("x"), None);
    assert_eq!(parse_size("99999999999999999999GiB"), None);
}

#[test]
fn notify_sinks_are_checked_and_named() {
    let c = Config::from_toml(
        r#"
        [[notify]]
        kind = "slack"
        url_env = "ROLLBACKD_SLACK_URL"
        [[notify]]
        kind = "webhook"
        name = "pager"
        url = "https://hooks.example/x"
        secret_env = "HOOK_SECRET"
        events = ["not_recovered", "breaker_opened"]
        "#,
    )
    .unwrap();
    assert_eq!(c.notify.len(), 2);
    assert_eq!(c.notify[0].name, "slack-0");
    assert_eq!(c.notify[0].events.len(), 4, "the contract's default events");
    assert_eq!(c.notify[0].api_url, "http://127.0.0.1:9464");
    assert_eq!(c.notify[1].name, "pager");
    let bad = |toml: &str, key: &str| {
        let e = Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    };
    bad(
        "[[notify]]\nkind = \"slack\"\n",
        "notify[0].url: set url or url_env",
    );
    bad(
        "[[notify]]\nkind = \"slack\"\nurl = \"ftp://x\"\n",
        "notify[0].url: must start with http:// or https://",
    );
    bad(
        "[[notify]]\nkind = \"slack\"\nurl = \"https://x\"\nsecret_env = \"S\"\n",
        "notify[0].secret_env",
    );
    bad(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://x\"\nevents = [\"everything\"]\n",
        "unknown variant `everything`",
    );
    bad(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://x\"\nevents = []\n",
        "notify[0].events",
    );
    bad(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://x\"\n[[notify]]\nkind = \"webhook\"\nname = \"webhook-0\"\nurl = \"https://y\"\n",
        "notify[1].name",
    );
    bad(
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://x\"\nqueue = 0\n",
        "notify[0].queue",
    );
    bad(
        "[[notify]]\nkind = \"email\"\nurl = \"https://x\"\n",
        "unknown variant `email`",
    );
}

#[test]
fn notify_env_vars_are_read_at_start_without_echoing_the_url() {
    let c = Config::from_toml(
        "[[notify]]\nkind = \"slack\"\nurl_env = \"ROLLBACKD_TEST_NOTIFY_URL_UNSET\"\n",
    )
    .unwrap();
    let e = c.notify[0].resolve(0).unwrap_err().to_string();
    assert!(
        e.contains(
            "notify[0].url_env: environment variable ROLLBACKD_TEST_NOTIFY_URL_UNSET is not set"
        ),
        "{e}"
    );
}

#[test]
fn kafka_stuck_after_defaults_and_is_checked() {
    let c = Config::from_toml("[kafka]\n").unwrap();
    assert_eq!(
        c.kafka.as_ref().map(|k| k.stuck_after),
        Some(Duration::from_secs(60))
    );
    let c = Config::from_toml("[kafka]\nstuck_after = \"90s\"\n").unwrap();
    assert_eq!(
        c.kafka.as_ref().map(|k| k.stuck_after),
        Some(Duration::from_secs(90))
    );
    for bad in [
        "stuck_after = \"500ms\"",
        "stuck_after = \"2h\"",
        "evidence_flush = \"5s\"\nstuck_after = \"5s\"",
    ] {
        let e = Config::from_toml(&format!("[kafka]\n{bad}\n")).unwrap_err();
        assert!(e.to_string().contains("kafka.stuck_after"), "{bad}: {e}");
    }
}

#[test]
fn allowed_lateness_defaults_overrides_and_bounds() {
    let c = Config::from_toml(
        r#"
        [slo]
        allowed_lateness = "90s"
        [slo.services.search]
        allowed_lateness = "0s"
        "#,
    )
    .unwrap();
    assert_eq!(c.default_policy.allowed_lateness, Duration::from_secs(90));
    assert_eq!(c.policy("search").allowed_lateness, Duration::ZERO);
    assert_eq!(
        Config::default().default_policy.allowed_lateness,
        Duration::from_secs(60)
    );
    // Unset, never longer than the windows.
    let short = "[slo]\nwindows = [ { short = \"10s\", long = \"30s\", burn_rate = 10.0 } ]\n";
    let c = Config::from_toml(short).unwrap();
    assert_eq!(c.default_policy.allowed_lateness, Duration::from_secs(30));
    for (toml, key) in [
        ("[slo]\nallowed_lateness = \"31m\"\n", "slo.allowed_lateness"),
        (
            "[slo.services.a]\nallowed_lateness = \"2m\"\nwindows = [ { short = \"30s\", long = \"1m\", burn_rate = 10.0 } ]\n",
            "slo.services.a.allowed_lateness",
        ),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[test]
fn requests_default_inherit_and_are_checked() {
    use crate::model::RequestKind::{Http, Messaging, Rpc};
    let c = Config::from_toml(
        "[slo.services.worker]\nrequests = [\"messaging\"]\n[slo.services.api]\nobjective = 0.99\n",
    )
    .unwrap();
    let kinds = |name: &str| c.policy(name).requests.iter().collect::<Vec<_>>();
    assert_eq!(kinds("other"), [Http, Rpc]);
    assert_eq!(kinds("api"), [Http, Rpc]);
    assert_eq!(kinds("worker"), [Messaging]);
    let c = Config::from_toml("[slo]\nrequests = [\"rpc\", \"messaging\"]\n").unwrap();
    assert_eq!(
        c.policy("any").requests.iter().collect::<Vec<_>>(),
        [Rpc, Messaging]
    );
    assert!(err("[slo.services.worker]\nrequests = []\n")
        .contains("slo.services.worker.requests: needs at least one of"));
    let e = err("[slo]\nrequests = [\"grpc\"]\n");
    assert!(e.contains("grpc") && e.contains("`rpc`"), "{e}");
}

#[test]
fn maintenance_windows_are_checked_and_named() {
    let c = Config::from_toml(
        r#"
        [[guards.maintenance]]
        services = ["checkout"]
        start = "2026-12-05T02:00:00Z"
        end = "2026-12-05T04:00:00+01:00"
        [[guards.maintenance]]
        name = "patching"
        weekly = [{ day = "sat", start = "22:00", end = "02:00" }]
        "#,
    )
    .unwrap();
    let w = &c.guards.maintenance;
    assert_eq!(w[0].name, "maintenance-0");
    assert_eq!(w[1].name, "patching");
    assert_eq!(w[1].weekly[0].timezone.0, 0, "UTC by default");
    let table = |body: &str| format!("[[guards.maintenance]]\n{body}\n");
    for (body, want) in [
        (
            "start = \"2026-12-05T04:00:00Z\"\nend = \"2026-12-05T02:00:00Z\"",
            "guards.maintenance[0].end: must be after start",
        ),
        (
            "start = \"2026-12-05T04:00:00Z\"",
            "guards.maintenance[0].end: set with start",
        ),
        (
            "services = [\"web\"]",
            "guards.maintenance[0].start: set start and end, or weekly",
        ),
        (
            "services = [\"\"]\nweekly = [{ day = \"sun\", start = \"01:00\", end = \"02:00\" }]",
            "guards.maintenance[0].services: a service name is empty",
        ),
        (
            "weekly = [{ day = \"sun\", start = \"01:00\", end = \"01:00\" }]",
            "guards.maintenance[0].weekly[0].end: must differ from start",
        ),
        (
            "weekly = [{ day = \"sun\", start = \"24:00\", end = \"01:00\" }]",
            "guards.maintenance[0].weekly[0].start: must be before \"24:00\"",
        ),
        ("weekly = [{ day = \"sunday\", start = \"01:00\", end = \"02:00\" }]", "unknown variant `sunday`"),
        ("weekly = [{ day = \"sun\", start = \"1:00\", end = \"02:00\" }]", "invalid time of day \"1:00\""),
        (
            "weekly = [{ day = \"sun\", start = \"01:00\", end = \"02:00\", timezone = \"Europe/Paris\" }]",
            "zone names are not supported",
        ),
        ("start = \"tomorrow\"\nend = \"2026-12-05T02:00:00Z\"", "invalid timestamp \"tomorrow\""),
        ("weekly = []\nzz = 1", "unknown field `zz`"),
    ] {
        let e = err(&table(body));
        assert!(e.contains(want), "{body}: {e}");
    }
    let twice = "[[guards.maintenance]]\nname = \"a\"\nweekly = [{ day = \"sun\", start = \"01:00\", end = \"02:00\" }]\n".repeat(2);
    assert!(err(&twice).contains("guards.maintenance[1].name: \"a\" is already used"));
}

#[test]
fn grafana_sinks_need_a_token_and_default_to_the_timeline_events() {
    let c = Config::from_toml(
        "[[notify]]\nkind = \"grafana\"\nurl = \"https://grafana.example/\"\ntoken_env = \"ROLLBACKD_TEST_GRAFANA_TOKEN_UNSET\"\ndashboard_uid = \"rollouts\"\n",
    )
    .unwrap();
    let events: Vec<&str> = c.notify[0].events.iter().map(|e| e.as_str()).collect();
    assert_eq!(
        events,
        [
            "deploy",
            "decision",
            "command",
            "approval_required",
            "recovered",
            "not_recovered",
            "inconclusive"
        ]
    );
    assert_eq!(c.notify[0].name, "grafana-0");
    let e = c.notify[0].resolve(0).unwrap_err().to_string();
    assert!(
        e.contains("notify[0].token_env: environment variable ROLLBACKD_TEST_GRAFANA_TOKEN_UNSET is not set"),
        "{e}"
    );
    for (toml, want) in [
        (
            "[[notify]]\nkind = \"grafana\"\nurl = \"https://g.example\"\n",
            "notify[0].token_env: a Grafana sink needs",
        ),
        (
            "[[notify]]\nkind = \"slack\"\nurl = \"https://x.example\"\ntoken_env = \"T\"\n",
            "notify[0].token_env: only Grafana sinks take a token",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"https://x.example\"\ndashboard_uid = \"d\"\n",
            "notify[0].dashboard_uid: only Grafana sinks",
        ),
        (
            "[[notify]]\nkind = \"grafana\"\nurl = \"https://g.example\"\ntoken_env = \"T\"\nsecret_env = \"S\"\n",
            "notify[0].secret_env",
        ),
        (
            "[[notify]]\nkind = \"grafana\"\nurl = \"https://g.example\"\ntoken_env = \"T\"\nevents = []\n",
            "notify[0].events: must name at least one event",
        ),
    ] {
        let e = err(toml);
        assert!(e.contains(want), "{toml}: {e}");
    }
}
