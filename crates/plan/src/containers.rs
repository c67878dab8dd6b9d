//! Docker diff: the network, the runtime images and containers.
//!
//! Containers are pic2's when they carry the label `org.pic2.platform` with this platform's
//! name. A container whose specification label differs is replaced (a new image, a new port);
//! one whose vhost configuration changes in this plan is reloaded gracefully instead, so a site
//! added or moved costs the other sites nothing.

use crate::change::{Change, Kind, Op, Phase, Plan, System};
use crate::observed::ObservedContainers;
use crate::Options;
use pic2_inventory::ValidInventory;
use pic2_render::containers::{desired, LABEL_PLATFORM, LABEL_SPEC};
use std::collections::BTreeSet;

pub(crate) fn diff(
    inv: &ValidInventory,
    observed: &ObservedContainers,
    options: Options,
    plan: &mut Plan,
) {
    let Some(want) = desired(inv) else { return };
    let platform = inv.platform.name.as_str();
    let ours = |labels: &std::collections::BTreeMap<String, String>| {
        labels.get(LABEL_PLATFORM).map(String::as_str) == Some(platform)
    };

    match observed.networks.get(&want.network.name) {
        None => {
            let subnet = want
                .network
                .subnet6
                .as_ref()
                .map(|s| format!(" (IPv6 {s})"))
                .unwrap_or_default();
            plan.push(Change::new(
                System::Containers,
                Kind::Create,
                Phase::Networks,
                want.network.name.clone(),
                format!("create network {}{subnet}", want.network.name),
                Op::CreateNetwork {
                    network: want.network.clone(),
                },
            ))
        }
        Some(labels) if !ours(labels) => {
            plan.conflict(
                System::Containers,
                &want.network.name,
                "a Docker network of that name exists and pic2 does not manage it",
                "remove or rename that network (docker network rm)",
            );
            return;
        }
        Some(_) => {
            // the database users are granted from the inventory's subnet: a network on
            // another one would leave every site without its database (compared as
            // networks, not as text: fd00:…:0001::/64 is fd00:…:1::/64)
            let have: Vec<&str> = observed
                .network_subnets
                .get(&want.network.name)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|s| s.contains(':'))
                .collect();
            if let Some(subnet) = &want.network.subnet6 {
                if !have.iter().any(|h| same_network(h, subnet)) {
                    plan.conflict(
                        System::Containers,
                        &want.network.name,
                        format!("the network's IPv6 subnet is not {subnet} (it has {})", if have.is_empty() { "none".to_string() } else { have.join(", ") }),
                        format!("a network's addresses cannot change under its containers: remove pic2's containers on it and the network (docker rm -f …; docker network rm {}), then apply, which makes them again", want.network.name),
                    );
                    return;
                }
            }
        }
    }

    for image in &want.images {
        if observed.images.contains(&image.tag) {
            continue;
        }
        let missing_base = image
            .base()
            .filter(|b| !b.contains('@')) // pinned by digest: not in the tags listed
            .filter(|b| !observed.images.contains(&as_listed(b)));
        if let Some(base) = missing_base {
            plan.conflict(
                System::Containers,
                &image.tag,
                format!("its base image {base} is not on this Docker engine, and pic2 pulls from no registry (the engine would try Docker Hub)"),
                "make it on this engine (`docker import` of a debootstrap tree, as dev/docker.sh does for local/debian:*), or name one that is here",
            );
            continue;
        }
        let dockerfile = image.files.iter().filter(|(n, _, _)| n == "Dockerfile");
        let details = dockerfile
            .flat_map(|(_, text, _)| text.lines().map(|l| format!("+ {l}")))
            .collect();
        plan.push(
            Change::new(
                System::Containers,
                Kind::Create,
                Phase::Images,
                image.tag.clone(),
                format!("build image {}", image.tag),
                Op::BuildImage {
                    image: image.clone(),
                },
            )
            .with_details(details),
        );
    }

    let changed_configs: BTreeSet<String> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.op {
            Op::WriteFile { path, .. } => Some(path.display().to_string()),
            _ => None,
        })
        .collect();
    let wanted: BTreeSet<&str> = want.containers.iter().map(|c| c.name.as_str()).collect();
    for c in &want.containers {
        let change = |kind, summary: String, details: Vec<String>, op| {
            Change::new(
                System::Containers,
                kind,
                Phase::Containers,
                c.name.clone(),
                summary,
                op,
            )
            .with_details(details)
        };
        match observed.containers.get(&c.name) {
            None => plan.push(change(
                Kind::Create,
                format!(
                    "create and start container {} ({}: {} on {})",
                    c.name,
                    c.role,
                    c.image,
                    c.ports
                        .iter()
                        .map(|p| format!("{}:{}", p.host_ip, p.host_port))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                vec![],
                Op::CreateContainer {
                    container: c.clone(),
                },
            )),
            Some(actual) if !ours(&actual.labels) => plan.conflict(
                System::Containers,
                &c.name,
                "a container of that name exists and pic2 does not manage it",
                "remove or rename that container (docker rm)",
            ),
            Some(actual) if actual.labels.get(LABEL_SPEC) != c.labels.get(LABEL_SPEC) => {
                let why = if actual.image != c.image {
                    format!("image {} → {}", actual.image, c.image)
                } else {
                    "its settings changed".to_string()
                };
                plan.push(change(
                    Kind::Update,
                    format!(
                        "restart container {} with a new specification ({why})",
                        c.name
                    ),
                    vec![
                        format!("- image: {}", actual.image),
                        format!("+ image: {}", c.image),
                    ],
                    Op::ReplaceContainer {
                        container: c.clone(),
                    },
                ));
            }
            Some(actual) if !actual.running => plan.push(change(
                Kind::Update,
                format!("start container {} (it is {})", c.name, actual.state),
                vec![],
                Op::StartContainer {
                    name: c.name.clone(),
                },
            )),
            Some(_)
                if !c.reload.is_empty()
                    && c.config_files.iter().any(|f| {
                        // the file changes now, or changed in an apply that stopped before
                        // its reload (its stamp, written after the reloads, is stale)
                        let stamp = pic2_render::files::loaded_stamp_path(f.as_ref());
                        changed_configs.contains(f)
                            || changed_configs.contains(&stamp.display().to_string())
                    }) =>
            {
                let mut reload = change(
                    Kind::Update,
                    format!("reload {} gracefully (its configuration changed)", c.name),
                    vec![],
                    Op::Reload {
                        name: c.name.clone(),
                        command: c.reload.clone(),
                    },
                );
                reload.phase = Phase::Reloads;
                plan.push(reload);
            }
            Some(_) => {}
        }
    }
    for (name, actual) in &observed.containers {
        if !ours(&actual.labels) || wanted.contains(name.as_str()) {
            continue;
        }
        if options.prune {
            plan.push(Change::new(
                System::Containers,
                Kind::Delete,
                Phase::ContainerDeletes,
                name.clone(),
                format!("stop and remove container {name}"),
                Op::RemoveContainer { name: name.clone() },
            ));
        } else {
            plan.hold(System::Containers, name.clone(), "--prune");
        }
    }
}

/// An image reference as the engine lists its tags: `:latest` when it has none, without
/// Docker Hub's default prefixes.
fn as_listed(reference: &str) -> String {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let name = short.rsplit('/').next().unwrap_or(short);
    if name.contains(':') {
        short.to_string()
    } else {
        format!("{short}:latest")
    }
}

/// Two networks written `address/length`, the same whatever their spelling.
fn same_network(a: &str, b: &str) -> bool {
    let parse = |s: &str| pic2_inventory::parse_network(s, Default::default()).ok();
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Observed, ObservedContainer};
    use crate::plan;
    use crate::tests::{applied_databases, applied_files, demo};

    fn applied() -> (ValidInventory, Observed) {
        let inv = demo();
        let mut o = Observed {
            files: applied_files(&inv),
            databases: applied_databases(&inv),
            ..Default::default()
        };
        let want = desired(&inv).unwrap();
        o.containers
            .networks
            .insert(want.network.name.clone(), want.network.labels.clone());
        o.containers.network_subnets.insert(
            want.network.name.clone(),
            want.network.subnet6.iter().cloned().collect(),
        );
        o.containers
            .images
            .extend(want.images.iter().map(|i| i.tag.clone()));
        for c in &want.containers {
            o.containers.containers.insert(
                c.name.clone(),
                ObservedContainer {
                    labels: c.labels.clone(),
                    image: c.image.clone(),
                    running: true,
                    state: "running".into(),
                },
            );
        }
        (inv, o)
    }

    fn docker(p: &crate::Plan) -> Vec<String> {
        p.changes
            .iter()
            .filter(|c| c.system == System::Containers)
            .map(|c| c.summary.clone())
            .collect()
    }

    #[test]
    fn nothing_running_gets_network_images_and_containers_in_order() {
        let inv = demo();
        let o = Observed {
            containers: crate::tests::fresh_engine(&inv),
            ..Default::default()
        };
        let p = plan(&inv, &o, Options::default());
        let phases: Vec<Phase> = p
            .changes
            .iter()
            .filter(|c| c.system == System::Containers)
            .map(|c| c.phase)
            .collect();
        // Two PHP images, SFTP and phpMyAdmin; then the network; then four containers.
        let expected: Vec<Phase> = [
            (Phase::Images, 4),
            (Phase::Networks, 1),
            (Phase::Containers, 4),
        ]
        .iter()
        .flat_map(|(phase, n)| std::iter::repeat_n(*phase, *n))
        .collect();
        assert_eq!(phases, expected);
        let last_files = p
            .changes
            .iter()
            .rposition(|c| c.system == System::Files && c.phase != Phase::AfterReloads)
            .unwrap();
        let first_docker = p
            .changes
            .iter()
            .position(|c| c.system == System::Containers)
            .unwrap();
        assert!(
            last_files < first_docker,
            "configuration is written before the containers start"
        );
        // the proxy's routes last: they lead to runtimes that serve their sites by then
        let routes = p
            .changes
            .iter()
            .rposition(|c| c.phase == Phase::AfterReloads);
        assert_eq!(routes, Some(p.changes.len() - 1), "{:?}", p.changes.last());
    }

    /// The network on another IPv6 subnet than the inventory's (the database grants follow
    /// the inventory): a conflict saying how to remake it, not a silent mismatch.
    #[test]
    fn a_network_on_another_subnet_is_a_conflict() {
        let (inv, mut o) = applied();
        let name = desired(&inv).unwrap().network.name;
        o.containers
            .network_subnets
            .insert(name.clone(), ["fd00:dead::/64".to_string()].into());
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1, "{:#?}", p.conflicts);
        assert!(
            p.conflicts[0].message.contains("it has fd00:dead::/64"),
            "{}",
            p.conflicts[0].message
        );
    }

    #[test]
    fn image_references_as_listed_and_networks_whatever_their_spelling() {
        assert_eq!(as_listed("local/debian"), "local/debian:latest");
        assert_eq!(as_listed("local/debian:trixie"), "local/debian:trixie");
        assert_eq!(
            as_listed("docker.io/library/debian:bookworm"),
            "debian:bookworm"
        );
        assert_eq!(as_listed("registry:5000/x"), "registry:5000/x:latest");
        assert!(same_network(
            "FD00:5049:4332:0001::/64",
            "fd00:5049:4332:1::/64"
        ));
        assert!(!same_network(
            "fd00:5049:4332:1::/64",
            "fd00:5049:4332:2::/64"
        ));
    }

    /// A base image missing from the engine would make it pull from Docker Hub: a conflict,
    /// before anything, and no build.
    #[test]
    fn a_missing_base_image_is_a_conflict_not_a_pull() {
        let inv = demo();
        let p = plan(&inv, &Observed::default(), Options::default());
        assert!(
            p.conflicts.iter().any(|c| c
                .message
                .contains("base image local/debian:bookworm is not on this Docker engine")),
            "{:#?}",
            p.conflicts
        );
        assert!(p.changes.iter().all(|c| c.phase != Phase::Images));
    }

    #[test]
    fn applied_needs_nothing_and_a_site_change_reloads_only_its_runtime() {
        let (inv, mut o) = applied();
        assert!(docker(&plan(&inv, &o, Options::default())).is_empty());
        // The itk84 configuration on disk is an older one: a reload, not a restart.
        let conf = o
            .files
            .paths
            .keys()
            .find(|p| p.ends_with("itk84/runtime.conf"))
            .unwrap()
            .clone();
        o.files.paths.get_mut(&conf).unwrap().contents = Some("old".into());
        assert_eq!(
            docker(&plan(&inv, &o, Options::default())),
            vec!["reload pic2-demo-itk84 gracefully (its configuration changed)"]
        );
    }

    /// An apply that wrote a runtime's configuration and stopped before reloading it (an
    /// image that did not build, Docker down) leaves the file right and its stamp stale: the
    /// next plan reloads the runtime, then writes the stamp, after the reloads.
    #[test]
    fn a_configuration_written_and_never_loaded_is_reloaded_by_the_next_plan() {
        let (inv, mut o) = applied();
        let stamp = o
            .files
            .paths
            .keys()
            .find(|p| p.ends_with("itk84/runtime.conf.loaded"))
            .unwrap()
            .clone();
        o.files.paths.remove(&stamp);
        let p = plan(&inv, &o, Options::default());
        assert_eq!(
            docker(&p),
            vec!["reload pic2-demo-itk84 gracefully (its configuration changed)"]
        );
        let reload = p.changes.iter().position(|c| c.phase == Phase::Reloads);
        let written = p
            .changes
            .iter()
            .position(|c| matches!(&c.op, Op::WriteFile { path, .. } if *path == stamp));
        assert!(
            reload.is_some() && written > reload,
            "the stamp is written after the reload: {:#?}",
            p.changes
        );
    }

    #[test]
    fn a_new_image_replaces_the_container_and_strangers_conflict() {
        let (inv, mut o) = applied();
        let c = o.containers.containers.get_mut("pic2-demo-itk82").unwrap();
        c.labels.insert(LABEL_SPEC.into(), "old".into());
        c.image = "pic2/runtime-php8.2:old".into();
        let p = plan(&inv, &o, Options::default());
        assert_eq!(docker(&p).len(), 1);
        assert!(matches!(
            p.changes
                .iter()
                .find(|c| c.system == System::Containers)
                .unwrap()
                .op,
            Op::ReplaceContainer { .. }
        ));
        o.containers
            .containers
            .get_mut("pic2-demo-itk84")
            .unwrap()
            .labels
            .clear();
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.conflicts.len(), 1);
    }

    #[test]
    fn removed_runtimes_are_held_without_prune() {
        let (inv, mut o) = applied();
        let mut old = o.containers.containers["pic2-demo-itk82"].clone();
        old.labels
            .insert(pic2_render::containers::LABEL_RUNTIME.into(), "gone".into());
        o.containers.containers.insert("pic2-demo-gone".into(), old);
        let p = plan(&inv, &o, Options::default());
        assert_eq!(p.held.len(), 1);
        let p = plan(
            &inv,
            &o,
            Options {
                prune: true,
                drop_data: false,
            },
        );
        assert_eq!(docker(&p), vec!["stop and remove container pic2-demo-gone"]);
    }
}
