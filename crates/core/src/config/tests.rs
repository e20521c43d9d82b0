//! Each invalid config is rejected with errors that name the file, the line and the key.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "SET_KEY" => Some("sk-set".into()),
        "EMPTY_KEY" => Some("  ".into()),
        _ => None,
    }
}

fn errors(src: &str) -> Vec<String> {
    match load_str(src, Some("gw.toml"), &env, 1) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const BASE: &str = r#"
[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
models = ["gpt-4o", "gpt-4o-mini"]
credential = "env::SET_KEY"

[targets.a]
model = "gpt-4o"
[targets.b]
model = "gpt-4o-mini"
"#;

fn one(extra: &str) -> String {
    let errs = errors(&format!("{BASE}{extra}"));
    assert_eq!(errs.len(), 1, "expected exactly one error, got {errs:#?}");
    errs.into_iter().next().unwrap_or_default()
}

#[test]
fn the_base_config_is_valid() {
    assert!(errors(BASE).is_empty());
}

#[test]
fn a_target_naming_a_model_no_provider_lists() {
    let e = one("[targets.c]\nmodel = \"claude-9\"\n");
    assert_eq!(
        e,
        "gw.toml:13: targets.c.model: no provider of project 'default' lists model 'claude-9'"
    );
}

#[test]
fn a_route_naming_an_unknown_target() {
    let e = one("[routes.r]\ntargets = [\"a\", \"nope\"]\n");
    assert_eq!(e, "gw.toml:13: routes.r.targets[1]: unknown target 'nope'");
}

#[test]
fn a_function_with_two_bodies() {
    let e = one("[routes.r]\ntargets = [\"a\"]\n[functions.f]\nroute = \"r\"\ntargets = [\"b\"]\n");
    assert!(
        e.starts_with("gw.toml:14: functions.f: a function needs exactly one of"),
        "{e}"
    );
    assert!(e.contains("route, targets"), "{e}");
}

#[test]
fn all_zero_weights() {
    let e = one(
        "[routes.r]\nstrategy = \"weighted\"\ntargets = [{ target = \"a\", weight = 0 }, { target = \"b\", weight = 0 }]\n",
    );
    assert_eq!(
        e,
        "gw.toml:14: routes.r.targets: all target weights are zero"
    );
    let e = one("[routes.r]\n[routes.r.variants.x]\ntarget = \"a\"\nweight = 0\n");
    assert_eq!(
        e,
        "gw.toml:13: routes.r.variants: all variant weights are zero"
    );
}

#[test]
fn a_weighted_route_with_a_target_in_error_is_not_also_called_all_zero() {
    // Only the unknown target is reported: its 70 is not "zero".
    let e = one(
        "[routes.r]\nstrategy = \"weighted\"\ntargets = [{ target = \"nope\", weight = 70 }, { target = \"a\", weight = 0 }]\n",
    );
    assert_eq!(e, "gw.toml:14: routes.r.targets[0]: unknown target 'nope'");
}

#[test]
fn an_unset_explicit_env_var() {
    let e = one("[targets.c]\nmodel = \"gpt-4o\"\ncredential = \"env::NOT_SET_ANYWHERE\"\n");
    assert_eq!(
        e,
        "gw.toml:14: targets.c.credential: environment variable NOT_SET_ANYWHERE is not set"
    );
    // Set, but to nothing: said so (an unset and an empty variable are fixed differently).
    let e = one("[targets.c]\nmodel = \"gpt-4o\"\ncredential = \"env::EMPTY_KEY\"\n");
    assert_eq!(
        e,
        "gw.toml:14: targets.c.credential: environment variable EMPTY_KEY is set but empty"
    );
}

#[test]
fn a_raw_secret_in_the_file() {
    let e = one("[targets.c]\nmodel = \"gpt-4o\"\ncredential = \"sk-live-123\"\n");
    assert!(
        e.starts_with("gw.toml:14: targets.c.credential: must be a reference like \"env::VAR\""),
        "{e}"
    );
    assert!(
        !e.contains("sk-live-123"),
        "the error must not repeat the secret: {e}"
    );
}

#[test]
fn a_misspelt_variant_param() {
    let e = one("[routes.r]\n[routes.r.variants.x]\ntarget = \"a\"\ntemprature = 0.2\n");
    assert!(e.starts_with("gw.toml:15: "), "{e}");
    assert!(e.contains("unknown field `temprature`"), "{e}");
}

#[test]
fn an_unknown_key_anywhere() {
    let e = one("[server]\nprot = 4000\n");
    assert!(e.starts_with("gw.toml:13: "), "{e}");
    assert!(e.contains("unknown field `prot`"), "{e}");
}

#[test]
fn strategies_and_endpoints_must_fit() {
    let e = one("[routes.r]\nstrategy = \"single\"\ntargets = [\"a\", \"b\"]\n");
    assert_eq!(
        e,
        "gw.toml:13: routes.r.strategy: strategy \"single\" takes exactly one target, found 2"
    );
    let e = one("[routes.r]\nendpoint = \"embeddings\"\ntargets = [\"a\"]\n");
    assert!(
        e.contains("routes.r.targets[0]: target 'a' serves chat"),
        "{e}"
    );
    let e = one("[routes.r]\nendpoint = \"chatt\"\ntargets = [\"a\"]\n");
    assert!(e.contains("unknown endpoint kind 'chatt'"), "{e}");
    let e = one("[routes.r]\nstrategy = \"roundrobin\"\ntargets = [\"a\"]\n");
    assert!(e.contains("unknown strategy 'roundrobin'"), "{e}");
}

#[test]
fn a_function_must_match_its_routes_endpoint() {
    let e = one(
        "[models.emb]\nendpoint = \"embeddings\"\n[routes.r]\ntargets = [\"a\"]\n[functions.f]\nendpoint = \"embeddings\"\nroute = \"r\"\n",
    );
    assert!(
        e.contains("functions.f.route: route 'r' serves chat, the function is embeddings"),
        "{e}"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let errs = errors(&format!(
        "{BASE}[routes.r]\ntargets = [\"x\", \"y\"]\n[targets.c]\nmodel = \"nope\"\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn auth_off_is_loopback_only() {
    let errs = errors("[server]\nauth = \"off\"\nhost = \"0.0.0.0\"\n");
    assert_eq!(
        errs,
        vec![
            "gw.toml:2: server.auth: auth = \"off\" is only allowed on a loopback address, not 0.0.0.0"
        ]
    );
    assert!(errors("[server]\nauth = \"off\"\nhost = \"::1\"\n").is_empty());
}

#[test]
fn a_host_that_cannot_be_listened_on_is_an_error() {
    assert_eq!(
        errors("[server]\nhost = \"not a host!!\"\n"),
        vec!["gw.toml:2: server.host: 'not a host!!' is not an IP address or a host name"]
    );
    assert_eq!(errors("[server]\nhost = \"999.1.1.1\"\n").len(), 1);
    assert_eq!(
        errors("[server]\nheader_read_timeout_ms = 18446744073709551615\n"),
        vec!["gw.toml:2: server.header_read_timeout_ms: must be at most 86400000 (a day)"]
    );
    for ok in ["0.0.0.0", "::", "localhost", "gw-1.internal"] {
        assert!(
            errors(&format!("[server]\nhost = \"{ok}\"\n")).is_empty(),
            "{ok}"
        );
    }
}

#[test]
fn a_provider_without_base_url_still_has_its_other_errors_reported() {
    let errs = errors(
        "[providers.ant]\nkind = \"anthropic\"\nmodels = [\"claude-x\"]\ncredential = \"env::NOT_SET_ANYWHERE\"\n",
    );
    assert!(
        errs.iter().any(|e| e.contains("`base_url` is required")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("providers.ant.credential")),
        "{errs:?}"
    );
}

#[test]
fn a_mock_provider_needs_no_key_whatever_its_id() {
    let loaded = load_str(
        "[providers.openai]\nkind = \"mock\"\nmodels = [\"m\"]\n",
        None,
        &env,
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_conventional_key_that_is_unset_only_warns() {
    // Also when passthrough is to use it: the warning names the variable.
    for extra in ["", "passthrough = \"credential\"\n"] {
        let src = format!("[providers.openai]\nmodels = [\"gpt-4o\"]\n{extra}");
        let loaded = load_str(&src, None, &env, 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loaded.warnings.iter().any(|w| w.contains("OPENAI_API_KEY")),
            "{:?}",
            loaded.warnings
        );
        // ... and the provider serves passthrough with caller keys only.
        let ps = loaded.snapshot.project("default").unwrap();
        let t = &ps.passthrough[&("openai".to_string(), "gpt-4o".to_string())];
        assert!(
            matches!(t.auth, crate::model::TargetAuth::Caller),
            "{extra}"
        );
    }
    // A provider with no conventional variable still needs a credential for that.
    let errs = errors(
        "[providers.mine]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\npassthrough = \"credential\"\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("needs a `credential`"), "{errs:?}");
}

#[test]
fn the_spec_example_config_loads() {
    let src = include_str!("../../../../docs/examples/spec-example.toml");
    let env = |n: &str| Some(format!("value-of-{n}"));
    let loaded =
        load_str(src, Some("spec-example.toml"), &env, 1).unwrap_or_else(|e| panic!("{e}"));
    let p = loaded.snapshot.project("default").unwrap();
    assert!(p.routes.contains_key("summarize"));
    assert!(p.functions.contains_key("summarise"));
    assert_eq!(p.route_models.len(), 1);
}

#[test]
fn secrets_are_trimmed_and_must_fit_in_a_header() {
    let env = |n: &str| match n {
        "WITH_NEWLINE" => Some("sk-abc\n".to_string()),
        "BROKEN" => Some("sk-a\u{7}b".to_string()),
        _ => None,
    };
    let src = "[providers.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\ncredential = \"env::WITH_NEWLINE\"\n";
    let loaded = load_str(src, None, &env, 1).unwrap();
    let p = &loaded.snapshot.project("default").unwrap().providers["up"];
    assert_eq!(p.credential.as_ref().unwrap().expose(), "sk-abc");
    let err = load_str(&src.replace("WITH_NEWLINE", "BROKEN"), None, &env, 1).unwrap_err();
    assert!(
        err.to_string().contains("cannot be sent in an HTTP header"),
        "{err}"
    );
}

#[test]
fn zero_timeouts_framing_headers_and_reserved_provider_ids_are_refused() {
    let e = one("[targets.c]\nmodel = \"gpt-4o\"\ntimeout_ms = 0\n");
    assert!(
        e.contains("targets.c.timeout_ms: a timeout must be greater than zero"),
        "{e}"
    );
    let errs = errors(&format!(
        "{BASE}[providers.up.headers]\ncontent-length = \"5\"\n"
    ));
    assert!(
        errs.iter().any(|e| e.contains("cannot be a static header")),
        "{errs:?}"
    );
    let errs = errors(
        "[providers.route]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\n",
    );
    assert!(
        errs.iter().any(|e| e.contains("'route' is reserved")),
        "{errs:?}"
    );
}

#[test]
fn a_route_naming_a_target_with_errors_points_at_them_not_at_a_missing_target() {
    let errs = errors(
        "[providers.x]\nkind = \"mock\"\nmodels = [\"a\"]\n[targets.c]\nmodel = \"a\"\ncredential = \"env::UNSET_VAR_XYZ\"\n[routes.r]\ntargets = [\"c\", \"nope\"]\n",
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].contains("targets.c.credential") && errs[0].contains("UNSET_VAR_XYZ"),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(
            |e| e.contains("routes.r.targets[0]: target 'c' is not valid (see its own errors)")
        ),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("routes.r.targets[1]: unknown target 'nope'")),
        "{errs:?}"
    );
}

#[test]
fn server_keys_that_would_only_fail_later_are_refused_when_the_config_loads() {
    for (src, key) in [
        ("[server]\nmetrics_token = \"\"\n", "server.metrics_token"),
        (
            "[server]\nadmin_listen = \"bogus\"\n",
            "server.admin_listen",
        ),
        ("[models.\"a::b\"]\nendpoint = \"chat\"\n", "models.a::b"),
    ] {
        let errs = errors(src);
        assert!(errs.iter().any(|e| e.contains(key)), "{src}: {errs:?}");
    }
    for ok in [
        "same",
        "off",
        "127.0.0.1:4001",
        "localhost:4001",
        "[::1]:4001",
    ] {
        assert!(
            errors(&format!("[server]\nadmin_listen = \"{ok}\"\n")).is_empty(),
            "{ok}"
        );
    }
}

#[test]
fn a_type_error_in_the_file_names_its_key_in_the_configs_words() {
    let errs = errors("[routes.r]\ntargets = [{ target = \"t\", weight = \"x\" }]\n");
    assert!(
        errs[0].contains(":2: routes.r.targets[0].weight: invalid type"),
        "{errs:?}"
    );
    let errs = errors(
        "[defaults.provider]\ntimeout_ms = 5\n[providers.up]\nkind = \"mock\"\nmodels = [\"m\"]\nheaders = 5\n",
    );
    assert!(errs[0].contains("providers.up.headers"), "{errs:?}");
    assert!(errs.iter().all(|e| !e.contains("Raw")), "{errs:?}");
}

#[test]
fn a_syntax_error_names_the_key_on_its_line() {
    assert_eq!(
        errors("[server]\nport = 1\nport = 2\n"),
        vec!["gw.toml:3: port: duplicate key"]
    );
    let e = errors("[server]\nport = \n");
    assert!(e[0].starts_with("gw.toml:2: port: "), "{e:?}");
    let e = errors("[server]\nport = 1\n[server]\n");
    assert!(e[0].starts_with("gw.toml:3: server: "), "{e:?}");
}

#[test]
fn a_variant_with_a_target_in_error_still_has_its_params_checked() {
    let errs = errors(&format!(
        "{BASE}[routes.r]\n[routes.r.variants.x]\ntarget = \"nope\"\nparams = {{ stream = true }}\n"
    ));
    assert!(
        errs.iter().any(|e| e.contains("unknown target 'nope'")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("variants.x.params.stream")),
        "{errs:?}"
    );
}

#[test]
fn every_unknown_key_is_reported_not_only_the_first() {
    let errs = errors(&format!(
        "{BASE}[server]\nprot = 1\nauth = \"off\"\nrequest_timeout = 5\n[targets.c]\nmodel = \"gpt-4o\"\nwieght = 2\n"
    ));
    let keys: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        ["server.prot", "server.request_timeout", "targets.c.wieght"],
        "{errs:#?}"
    );
    assert!(
        errs[0].starts_with("gw.toml:13: server.prot: unknown field"),
        "{errs:#?}"
    );
}

#[test]
fn the_store_section_is_checked_with_the_rest() {
    let e = one("[store]\nurl = \"env::UNSET_DB\"\n");
    assert_eq!(
        e,
        "gw.toml:13: store.url: names environment variable UNSET_DB, which is not set"
    );
    let e = one("[store]\nurl = \"mysql://u:secret@h/db\"\n");
    assert!(
        e.contains("store.url: unsupported store URL (scheme 'mysql')"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    assert!(one("[store]\ndata_dir = \"\"\n").contains("store.data_dir: must not be empty"));
    assert!(errors(&format!("{BASE}[store]\nurl = \"postgres://h/db\"\n")).is_empty());
}

#[test]
fn project_names_are_names_the_admin_api_can_address() {
    let e = one("[api_keys.k]\nkey = \"env::SET_KEY\"\nproject = \"a b\"\n");
    assert!(
        e.starts_with("gw.toml:14: api_keys.k.project: project 'a b' is not a valid project name"),
        "{e}"
    );
}

#[test]
fn variant_params_no_upstream_takes_are_refused() {
    let route = |params: &str| {
        errors(&format!(
            "{BASE}[routes.x]\nvariants = {{ v = {{ target = \"a\", {params} }} }}\n"
        ))
    };
    for (params, key) in [
        ("temperature = 2.5", "temperature"),
        ("top_p = 1.5", "top_p"),
        ("presence_penalty = -3.0", "presence_penalty"),
        ("max_tokens = 0", "max_tokens"),
        ("reasoning_effort = \"extreme\"", "reasoning_effort"),
        ("response_format = \"json\"", "response_format"),
    ] {
        let errs = route(params);
        assert_eq!(errs.len(), 1, "{params}: {errs:#?}");
        assert!(
            errs[0].starts_with(&format!("gw.toml:13: routes.x.variants.v.{key}: ")),
            "{errs:#?}"
        );
    }
    assert!(route("temperature = 0.2, response_format = { type = \"json_object\" }, reasoning_effort = \"low\"").is_empty());
}

/// Variant params every request of the variant would be refused for are refused when the
/// config loads: chat parameters on another endpoint's experiment, params on uploads, and what
/// a translating adapter cannot honour.
#[test]
fn variant_params_their_target_can_never_serve_are_refused() {
    let with = |extra: &str| {
        errors(&format!(
            "{BASE}[providers.anth]\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"claude-x\"]\ncredential = \"env::SET_KEY\"\n\
         [models.emb]\nendpoint = \"embeddings\"\n[models.whisper]\nendpoint = \"audio_transcription\"\n\
         [providers.media]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"emb\", \"whisper\"]\ncredential = \"env::SET_KEY\"\n{extra}"
        ))
    };
    let one_of = |extra: &str, key: &str, says: &str| {
        let errs = with(extra);
        assert_eq!(errs.len(), 1, "{extra}: {errs:#?}");
        assert!(
            errs[0].contains(&format!(".{key}: ")) && errs[0].contains(says),
            "{errs:#?}"
        );
    };
    one_of(
        "[routes.x]\nvariants = { v = { model = \"claude-x\", presence_penalty = 0.5 } }\n",
        "presence_penalty",
        "cannot honour `presence_penalty`",
    );
    one_of(
        "[routes.x]\nvariants = { v = { model = \"claude-x\", response_format = { type = \"json_object\" } } }\n",
        "response_format",
        "no JSON mode",
    );
    one_of(
        "[routes.e]\nendpoint = \"embeddings\"\nvariants = { v = { model = \"emb\", temperature = 0.3 } }\n",
        "temperature",
        "chat completions parameter",
    );
    one_of(
        "[routes.t]\nendpoint = \"audio_transcription\"\nvariants = { v = { model = \"whisper\", params = { language = \"de\" } } }\n",
        "language",
        "take no params",
    );
    one_of(
        "[routes.x]\nvariants = { v = { model = \"claude-x\", reasoning_effort = \"low\" } }\n",
        "reasoning_effort",
        "no such parameter",
    );
    one_of(
        "[routes.x]\nvariants = { v = { model = \"claude-x\", temperature = 1.5 } }\n",
        "temperature",
        "from 0 to 1",
    );
    // What they can serve still loads: a zero penalty, text format, an embeddings field.
    assert!(with("[routes.x]\nvariants = { v = { model = \"claude-x\", presence_penalty = 0.0, temperature = 0.2 } }\n").is_empty());
    assert!(with("[routes.e]\nendpoint = \"embeddings\"\nvariants = { v = { model = \"emb\", params = { dimensions = 256 } } }\n").is_empty());
}

#[test]
fn unused_targets_of_one_model_cannot_all_weigh_zero() {
    let errs = errors(&format!(
        "{BASE}[targets.c]\nmodel = \"gpt-4o\"\nweight = 0\n[targets.d]\nmodel = \"gpt-4o\"\nweight = 0\n[routes.r]\ntargets = [\"a\", \"b\"]\n"
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("gw.toml:14: targets.c.weight: all weights are zero"),
        "{errs:#?}"
    );
}

#[test]
fn an_inherited_retry_policy_is_reported_once_where_it_is_written() {
    let errs = errors(&format!(
        "{BASE}[routing.retry]\nmax_retries = 11\n[routes.r]\ntargets = [\"a\"]\n[functions.f]\ntargets = [\"b\"]\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("routing.retry.max_retries"), "{errs:#?}");
}

#[test]
fn an_ambiguous_variant_model_says_how_to_name_its_provider() {
    let two = BASE.replace(
        "[targets.a]",
        "[providers.other]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"gpt-4o\"]\ncredential = \"env::SET_KEY\"\n\n[targets.a]\nprovider = \"up\"",
    );
    let errs = errors(&format!(
        "{two}[routes.x]\nvariants = {{ v = {{ model = \"gpt-4o\" }} }}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("routes.x.variants.v.model: several providers list model 'gpt-4o' (other, up): write which as 'other::gpt-4o' or 'up::gpt-4o'"),
        "{errs:#?}"
    );
}

#[test]
fn a_header_that_carries_a_key_is_never_a_written_value() {
    let provider = |headers: &str| {
        errors(&format!(
            "[providers.gw]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"m\"]\ncredential = \"env::SET_KEY\"\nheaders = {{ {headers} }}\n"
        ))
    };
    let e = provider("cf-aig-authorization = \"Bearer sk-raw\"");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].contains(
            "providers.gw.headers.cf-aig-authorization: `cf-aig-authorization` carries a key"
        ),
        "{e:#?}"
    );
    assert!(!e[0].contains("sk-raw"), "{e:#?}");
    assert!(provider("cf-aig-authorization = \"env::SET_KEY\", x-team = \"blue\"").is_empty());
    assert_eq!(provider("x-api-key = \"env::UNSET\"").len(), 1);
}

#[test]
fn a_variant_name_must_fit_in_a_header() {
    let e = one("[routes.x]\nvariants = { \"A b\" = { target = \"a\" } }\n");
    assert!(
        e.contains("routes.x.variants.\"A b\": 'A b' is not a valid variant name"),
        "{e}"
    );
}
