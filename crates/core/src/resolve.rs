//! From the `model` field to a route or a passthrough target (SPEC section 3).

use crate::error::{ApiError, ErrorCode};
use crate::model::*;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Resolution {
    /// A route, a function or the implicit route of a bare target (managed layer).
    Route(Arc<Route>),
    /// A provider model reached directly.
    Passthrough(Arc<Target>),
}

/// How a name was matched, for traces and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    FunctionPrefix,
    RoutePrefix,
    ProviderPrefix,
    BareFunction,
    BareRoute,
    RouteModels,
    ImplicitTarget,
    ProviderModel,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::FunctionPrefix => "function:: prefix",
            MatchedBy::RoutePrefix => "route:: prefix",
            MatchedBy::ProviderPrefix => "provider:: prefix (forced passthrough)",
            MatchedBy::BareFunction => "function name",
            MatchedBy::BareRoute => "route name",
            MatchedBy::RouteModels => "a route's `models` list",
            MatchedBy::ImplicitTarget => "a bare target's model",
            MatchedBy::ProviderModel => "a provider's `models` list (passthrough)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub resolution: Resolution,
    pub matched_by: MatchedBy,
}

impl Resolved {
    /// `x-signalbox-route`.
    pub fn label(&self) -> &str {
        match &self.resolution {
            Resolution::Route(r) => &r.label,
            Resolution::Passthrough(t) => &t.provider.passthrough_label,
        }
    }

    /// The same, as a header value built when the config loaded.
    pub fn label_header(&self) -> &http::HeaderValue {
        match &self.resolution {
            Resolution::Route(r) => &r.label_header,
            Resolution::Passthrough(t) => &t.provider.passthrough_label_header,
        }
    }
    /// `function`, `route`, `managed` or `passthrough`.
    pub fn layer(&self) -> &'static str {
        match &self.resolution {
            Resolution::Route(r) => match r.layer {
                RouteLayer::Function => "function",
                RouteLayer::Route => "route",
                RouteLayer::ImplicitTarget => "managed",
            },
            Resolution::Passthrough(_) => "passthrough",
        }
    }
}

fn not_found(message: String) -> ApiError {
    ApiError::new(ErrorCode::ModelNotFound, message).with_param("model")
}

fn wrong_endpoint(what: &str, name: &str, kind: EndpointKind) -> ApiError {
    ApiError::new(
        ErrorCode::WrongEndpoint,
        format!("{what} '{name}' serves {kind}: {}", kind.endpoint_hint()),
    )
    .with_param("model")
}

/// Resolve a model string for an endpoint within a project.
pub fn resolve(
    ps: &ProjectSnapshot,
    endpoint: EndpointKind,
    model: &str,
) -> Result<Resolved, ApiError> {
    if let Some(name) = model.strip_prefix("function::") {
        return match ps.functions.get(name) {
            Some(f) if f.endpoint == endpoint => Ok(Resolved {
                resolution: Resolution::Route(f.clone()),
                matched_by: MatchedBy::FunctionPrefix,
            }),
            Some(f) => Err(wrong_endpoint("function", name, f.endpoint)),
            None => {
                let hint = match ps.routes.get(name) {
                    Some(r) if r.endpoint == endpoint => format!("; did you mean route::{name}?"),
                    Some(r) => format!(
                        "; route '{name}' serves {}: {}",
                        r.endpoint,
                        r.endpoint.endpoint_hint()
                    ),
                    None => bare_hint(ps, endpoint, name),
                };
                Err(not_found(format!("function '{name}' does not exist{hint}")))
            }
        };
    }
    if let Some(name) = model.strip_prefix("route::") {
        return match ps.routes.get(name) {
            Some(r) if r.endpoint == endpoint => Ok(Resolved {
                resolution: Resolution::Route(r.clone()),
                matched_by: MatchedBy::RoutePrefix,
            }),
            Some(r) => Err(wrong_endpoint("route", name, r.endpoint)),
            None => {
                let hint = match ps.functions.get(name) {
                    Some(f) if f.endpoint == endpoint => {
                        format!("; did you mean function::{name}?")
                    }
                    Some(f) => format!(
                        "; function '{name}' serves {}: {}",
                        f.endpoint,
                        f.endpoint.endpoint_hint()
                    ),
                    None => bare_hint(ps, endpoint, name),
                };
                Err(not_found(format!("route '{name}' does not exist{hint}")))
            }
        };
    }
    if let Some((provider, name)) = model.split_once("::") {
        let Some(p) = ps.providers.get(provider) else {
            return Err(not_found(format!(
                "model '{model}' not found: there is no provider '{provider}'"
            )));
        };
        if !p.models.iter().any(|m| m == name) {
            let elsewhere: Vec<String> = ps
                .providers
                .values()
                .filter(|o| o.models.iter().any(|m| m == name))
                .map(|o| format!("{}::{name}", o.id))
                .collect();
            let hint = if elsewhere.is_empty() {
                bare_hint(ps, endpoint, name)
            } else {
                format!("; listed as {}", elsewhere.join(", "))
            };
            return Err(not_found(format!(
                "provider '{provider}' does not list model '{name}'{hint}"
            )));
        }
        // A provider that serves no passthrough has no such model on any endpoint: 404
        // first, never a pointer to another endpoint where the call would fail the same way.
        let Some(t) = ps
            .passthrough
            .get(&(provider.to_string(), name.to_string()))
        else {
            return Err(not_found(format!(
                "model '{model}' not found: provider '{provider}' does not serve passthrough calls"
            )));
        };
        let kind = ps.model_kind(name);
        if kind != endpoint {
            return Err(wrong_endpoint("model", model, kind));
        }
        return Ok(Resolved {
            resolution: Resolution::Passthrough(t.clone()),
            matched_by: MatchedBy::ProviderPrefix,
        });
    }
    // Bare name, top-down: the first match wins.
    if let Some(found) = bare_matches(ps, endpoint, model).next() {
        return Ok(found);
    }
    Err(not_found(format!(
        "model '{model}' not found{}",
        hint(ps, endpoint, model)
    )))
}

/// Every match of a bare name for an endpoint, in the resolution order of SPEC section 3:
/// function, route, a route's `models`, a bare target's implicit route, a provider model.
/// Lazy, so `resolve` pays only for the first; `explain` lists the rest as shadowed.
pub fn bare_matches<'a>(
    ps: &'a ProjectSnapshot,
    endpoint: EndpointKind,
    model: &'a str,
) -> impl Iterator<Item = Resolved> + 'a {
    let route = |r: &Arc<Route>, matched_by| Resolved {
        resolution: Resolution::Route(r.clone()),
        matched_by,
    };
    let mut stage = 0;
    std::iter::from_fn(move || {
        while stage < 5 {
            stage += 1;
            let found = match stage {
                1 => ps
                    .functions
                    .get(model)
                    .filter(|f| f.endpoint == endpoint)
                    .map(|f| route(f, MatchedBy::BareFunction)),
                2 => ps
                    .routes
                    .get(model)
                    .filter(|r| r.endpoint == endpoint)
                    .map(|r| route(r, MatchedBy::BareRoute)),
                3 => ps
                    .route_models
                    .get(&(endpoint, model.to_string()))
                    .map(|r| route(r, MatchedBy::RouteModels)),
                4 => ps
                    .implicit
                    .get(model)
                    .filter(|r| r.endpoint == endpoint)
                    .map(|r| route(r, MatchedBy::ImplicitTarget)),
                _ => (ps.model_kind(model) == endpoint)
                    .then(|| ps.provider_models.get(model).and_then(|ps| ps.first()))
                    .flatten()
                    .and_then(|p| ps.passthrough.get(&(p.id.clone(), model.to_string())))
                    .map(|t| Resolved {
                        resolution: Resolution::Passthrough(t.clone()),
                        matched_by: MatchedBy::ProviderModel,
                    }),
            };
            if found.is_some() {
                return found;
            }
        }
        None
    })
}

/// For a prefixed name that does not exist: the bare name is a model this endpoint serves
/// (a route's `models` entry, a target's model, a provider's model).
fn bare_hint(ps: &ProjectSnapshot, endpoint: EndpointKind, name: &str) -> String {
    let served = ps.route_models.contains_key(&(endpoint, name.to_string()))
        || ((ps.implicit.contains_key(name) || ps.provider_models.contains_key(name))
            && ps.model_kind(name) == endpoint);
    if served {
        format!("; '{name}' is a model: call it without a prefix (\"model\": \"{name}\")")
    } else {
        // Served elsewhere, perhaps: the hint a bare name gets.
        hint(ps, endpoint, name)
    }
}

fn hint(ps: &ProjectSnapshot, endpoint: EndpointKind, model: &str) -> String {
    if let Some(f) = ps.functions.get(model) {
        return format!(
            "; function '{model}' serves {}: {}",
            f.endpoint,
            f.endpoint.endpoint_hint()
        );
    }
    if let Some(r) = ps.routes.get(model) {
        return format!(
            "; route '{model}' serves {}: {}",
            r.endpoint,
            r.endpoint.endpoint_hint()
        );
    }
    for kind in EndpointKind::ALL {
        if kind != endpoint && ps.route_models.contains_key(&(kind, model.to_string())) {
            return format!("; it is routed for {kind}: {}", kind.endpoint_hint());
        }
    }
    if ps.implicit.contains_key(model) || ps.provider_models.contains_key(model) {
        let kind = ps.model_kind(model);
        if kind != endpoint {
            return format!("; model '{model}' serves {kind}: {}", kind.endpoint_hint());
        }
    }
    if let Some(p) = ps
        .providers
        .values()
        .find(|p| p.models.iter().any(|m| m == model))
    {
        return format!(
            "; provider '{}' lists it but does not serve passthrough calls",
            p.id
        );
    }
    String::new()
}
