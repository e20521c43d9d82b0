//! `explain`: how a model string resolves and what the attempt plan is, without calling any
//! provider. Shared by `signalbox explain` (and, later, the admin API).

use crate::error::ApiError;
use crate::model::*;
use crate::resolve::{Resolution, bare_matches, resolve};
use serde_json::{Value, json};

fn target_json(t: &Target, weight: Option<u32>) -> Value {
    json!({
        "target": t.name,
        "provider": t.provider.id,
        "kind": t.provider.kind.as_str(),
        "model": t.model,
        "weight": weight,
        "auth": match t.auth {
            TargetAuth::Credential(_) => "gateway credential",
            TargetAuth::None => "none",
            TargetAuth::Caller => "caller's own key",
        },
    })
}

fn retry_json(r: &RetryPolicy) -> Value {
    json!({
        "max_retries": r.max_retries,
        "backoff_base_ms": r.backoff_base.as_millis() as u64,
        "backoff_max_ms": r.backoff_max.as_millis() as u64,
    })
}

pub fn explain(
    ps: &ProjectSnapshot,
    endpoint: EndpointKind,
    model: &str,
) -> Result<Value, ApiError> {
    let resolved = resolve(ps, endpoint, model)?;
    let matched = resolved.label().to_string();
    let shadowed: Vec<String> = if model.contains("::") {
        Vec::new()
    } else {
        bare_matches(ps, endpoint, model)
            .skip(1)
            .map(|r| r.label().to_string())
            .collect()
    };
    let plan = match &resolved.resolution {
        Resolution::Passthrough(t) => json!({
            "strategy": "passthrough",
            "passthrough_mode": match t.provider.passthrough {
                PassthroughMode::CallerKey => "caller_key",
                PassthroughMode::Credential => "credential",
                PassthroughMode::Off => "off",
            },
            "targets": [target_json(t, None)],
        }),
        Resolution::Route(r) => match &*r.body {
            RouteBody::Steps(steps) => json!({
                "strategy": if steps.len() > 1 { "steps" } else { steps[0].strategy.as_str() },
                "steps": steps.iter().map(|s| json!({
                    "strategy": s.strategy.as_str(),
                    "retry": retry_json(&s.retry),
                    "targets": s.targets.iter().map(|w| target_json(&w.target, Some(w.weight))).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "degraded_mode": steps.iter().map(|s| s.targets.len()).sum::<usize>() >= 2,
            }),
            RouteBody::Experiment {
                variants,
                sticky,
                retry,
            } => json!({
                "strategy": "experiment",
                "sticky": match sticky { Sticky::None => "none", Sticky::User => "user", Sticky::Session => "session" },
                "retry": retry_json(retry),
                "variants": variants.iter().map(|v| json!({
                    "variant": v.name,
                    "weight": v.weight,
                    "params": v.params,
                    "target": target_json(&v.target, None),
                })).collect::<Vec<_>>(),
                "degraded_mode": variants.len() >= 2,
            }),
        },
    };
    Ok(json!({
        "model": model,
        "endpoint": endpoint.as_str(),
        "layer": resolved.layer(),
        "matched": matched,
        "matched_by": resolved.matched_by.as_str(),
        "shadowed": shadowed,
        "plan": plan,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_shows_the_match_what_it_shadows_and_the_plan() {
        let src = include_str!("../../../docs/examples/spec-example.toml");
        let env = |n: &str| Some(format!("value-of-{n}"));
        let loaded = crate::config::load_str(src, None, &env, 1).unwrap();
        let ps = loaded.snapshot.project("default").unwrap();

        let v = explain(ps, EndpointKind::Chat, "gpt-4o").unwrap();
        assert_eq!(v["matched"], "route:balanced");
        assert_eq!(v["matched_by"], "a route's `models` list");
        assert!(
            v["shadowed"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "passthrough:openai"),
            "{v}"
        );
        assert_eq!(v["plan"]["strategy"], "weighted");
        assert_eq!(v["plan"]["steps"][0]["targets"][0]["weight"], 70);

        let v = explain(ps, EndpointKind::Chat, "route::resilient").unwrap();
        assert_eq!(v["plan"]["strategy"], "steps");
        assert_eq!(v["plan"]["steps"][1]["retry"]["max_retries"], 0);

        let v = explain(ps, EndpointKind::Chat, "route::tone").unwrap();
        assert_eq!(v["plan"]["sticky"], "user");
        assert_eq!(v["plan"]["variants"][0]["params"]["temperature"], 0.2);

        let err = explain(ps, EndpointKind::Chat, "route::embed").unwrap_err();
        assert_eq!(err.code.as_str(), "wrong_endpoint");
    }
}
