//! Strategies: a resolved route becomes an ordered list of attempts (SPEC section 4).

use crate::model::*;
use crate::resolve::Resolution;
use rand::Rng;
use sha2::Digest;
use std::sync::Arc;

/// One target in the plan, with the retry policy of its step.
#[derive(Debug, Clone)]
pub struct PlannedTarget {
    pub target: Arc<Target>,
    pub retry: RetryPolicy,
    pub variant: Option<Arc<Variant>>,
}

/// Where a sticky experiment took its key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickySource {
    UserHeader,
    SessionHeader,
    BodyUser,
    Random,
}

impl StickySource {
    pub fn as_str(self) -> &'static str {
        match self {
            StickySource::UserHeader => "x-signalbox-user-id",
            StickySource::SessionHeader => "x-signalbox-session-id",
            StickySource::BodyUser => "body.user",
            StickySource::Random => "random",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<PlannedTarget>,
    pub assigned_variant: Option<String>,
    pub sticky: Option<StickySource>,
}

/// Ids that keep an experiment sticky.
#[derive(Debug, Default, Clone, Copy)]
pub struct StickyIds<'a> {
    pub user: Option<&'a str>,
    pub session: Option<&'a str>,
    pub body_user: Option<&'a str>,
}

pub fn plan(resolution: &Resolution, ids: StickyIds<'_>, default_retry: RetryPolicy) -> Plan {
    match resolution {
        Resolution::Passthrough(t) => Plan {
            targets: vec![PlannedTarget {
                target: t.clone(),
                retry: default_retry,
                variant: None,
            }],
            assigned_variant: None,
            sticky: None,
        },
        Resolution::Route(r) => {
            // The experiment's own name salts its sticky hash: a function pointing at a route
            // runs that route's experiment, so it assigns as the route does.
            let via;
            let experiment = match &r.via_route {
                Some(route) => {
                    via = format!("route:{route}");
                    via.as_str()
                }
                None => r.label.as_str(),
            };
            plan_body(&r.body, ids, experiment)
        }
    }
}

/// The plan of a route body; `experiment` names the route or function whose experiment it is
/// (`route:NAME`, `function:NAME`), which sticky assignment hashes with the id.
pub fn plan_body(body: &RouteBody, ids: StickyIds<'_>, experiment: &str) -> Plan {
    let mut rng = rand::rng();
    match body {
        RouteBody::Steps(steps) => {
            let mut targets = Vec::new();
            for step in steps {
                let order: Vec<usize> = match step.strategy {
                    Strategy::Single | Strategy::Fallback => (0..step.targets.len()).collect(),
                    Strategy::Weighted => {
                        let w: Vec<u32> = step.targets.iter().map(|t| t.weight).collect();
                        weighted_order(&w, &mut rng)
                    }
                };
                for i in order {
                    targets.push(PlannedTarget {
                        target: step.targets[i].target.clone(),
                        retry: step.retry,
                        variant: None,
                    });
                }
            }
            Plan {
                targets,
                assigned_variant: None,
                sticky: None,
            }
        }
        RouteBody::Experiment {
            variants,
            sticky,
            retry,
        } => {
            let key = match sticky {
                Sticky::None => None,
                Sticky::User => ids
                    .user
                    .map(|u| (u, StickySource::UserHeader))
                    .or(ids.body_user.map(|u| (u, StickySource::BodyUser))),
                Sticky::Session => ids
                    .session
                    .map(|u| (u, StickySource::SessionHeader))
                    .or(ids.body_user.map(|u| (u, StickySource::BodyUser))),
            };
            let weights: Vec<u32> = variants.iter().map(|v| v.weight).collect();
            let (order, source) = match key {
                Some((id, source)) => {
                    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
                    (sticky_order(experiment, id, &names, &weights), Some(source))
                }
                None => {
                    let src = (*sticky != Sticky::None).then_some(StickySource::Random);
                    (weighted_order(&weights, &mut rng), src)
                }
            };
            let targets: Vec<PlannedTarget> = order
                .iter()
                .map(|&i| PlannedTarget {
                    target: variants[i].target.clone(),
                    retry: *retry,
                    variant: Some(variants[i].clone()),
                })
                .collect();
            Plan {
                assigned_variant: targets
                    .first()
                    .and_then(|t| t.variant.as_ref())
                    .map(|v| v.name.clone()),
                targets,
                sticky: source,
            }
        }
    }
}

/// An order drawn by weight without replacement (Efraimidis–Spirakis keys);
/// zero-weight entries come last, in their given order.
pub fn weighted_order(weights: &[u32], rng: &mut impl Rng) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            (u.ln() / f64::from(*w), i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    order.extend(
        weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w == 0)
            .map(|(i, _)| i),
    );
    order
}

/// Weighted rendezvous hashing: each (experiment, id, variant) gets score -w / ln(h), h in
/// (0,1); the highest score wins. Changing weights moves only the share that changed; the
/// experiment's name in the hash keeps two experiments' assignments independent (the same
/// users are not in every experiment's `treatment`).
pub fn sticky_order(experiment: &str, id: &str, names: &[&str], weights: &[u32]) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = names
        .iter()
        .zip(weights)
        .enumerate()
        .map(|(i, (name, w))| {
            let mut h = sha2::Sha256::new();
            h.update(experiment.as_bytes());
            h.update([0u8]);
            h.update(id.as_bytes());
            h.update([0u8]);
            h.update(name.as_bytes());
            let d = h.finalize();
            let mut x = [0u8; 8];
            x.copy_from_slice(&d[..8]);
            let u = (u64::from_be_bytes(x) >> 11) as f64 / (1u64 << 53) as f64;
            let u = u.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON);
            let score = if *w == 0 {
                f64::NEG_INFINITY
            } else {
                -f64::from(*w) / u.ln()
            };
            (score, i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_assignment_moves_few_ids_when_weights_change() {
        let names = ["a", "b"];
        let mut moved = 0;
        let mut a_before = 0;
        for i in 0..10_000 {
            let id = format!("user-{i}");
            let before = sticky_order("route:r", &id, &names, &[50, 50])[0];
            let after = sticky_order("route:r", &id, &names, &[60, 40])[0];
            assert_eq!(
                before,
                sticky_order("route:r", &id, &names, &[50, 50])[0],
                "stable"
            );
            if before == 0 {
                a_before += 1;
            }
            if before != after {
                moved += 1;
            }
        }
        assert!(
            (4_700..5_300).contains(&a_before),
            "50/50 split: {a_before}"
        );
        assert!(moved <= 1_500, "moved {moved} of 10000");
        assert!(moved >= 500, "the shift itself must move ids: {moved}");
    }

    /// Two experiments of the same shape assign each id independently: about half the ids
    /// get the same variant in both (as two coin flips would), not all of them.
    #[test]
    fn two_experiments_assign_the_same_ids_independently() {
        let names = ["control", "treatment"];
        let same = (0..10_000)
            .filter(|i| {
                let id = format!("user-{i}");
                sticky_order("route:one", &id, &names, &[50, 50])[0]
                    == sticky_order("route:two", &id, &names, &[50, 50])[0]
            })
            .count();
        assert!((4_700..5_300).contains(&same), "{same} of 10000 alike");
    }

    #[test]
    fn weighted_order_is_a_permutation_with_zero_weights_last() {
        let mut rng = rand::rng();
        for _ in 0..100 {
            let o = weighted_order(&[3, 0, 1], &mut rng);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 1);
        }
    }

    #[test]
    fn weighted_first_pick_follows_weights() {
        let mut rng = rand::rng();
        let mut first = [0usize; 2];
        for _ in 0..10_000 {
            first[weighted_order(&[70, 30], &mut rng)[0]] += 1;
        }
        assert!((6_700..7_300).contains(&first[0]), "{first:?}");
    }
}
