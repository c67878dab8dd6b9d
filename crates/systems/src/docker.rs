//! The Docker engine, over its API (bollard): three list calls to observe; images built from
//! rendered contexts, the network and the runtime containers created, replaced, reloaded.
//!
//! The rest of pic2 is synchronous; this module owns a small single-threaded tokio runtime and
//! blocks on each call.

use crate::Error;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HealthConfig, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use pic2_plan::{ObservedContainer, ObservedContainers};
use pic2_render::containers::{DesiredContainer, DesiredNetwork, PortMap};
use pic2_render::runtimes::ImageContext;
use std::collections::HashMap;

pub struct Engine {
    docker: Docker,
    rt: tokio::runtime::Runtime,
}

fn err<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
    let what = what.into();
    move |e| Error::docker(what, e)
}

impl Engine {
    pub fn connect() -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err("starting the I/O runtime"))?;
        let docker =
            Docker::connect_with_unix_defaults().map_err(err("connecting to the Docker engine"))?;
        rt.block_on(docker.ping())
            .map_err(err("reaching the Docker engine at /var/run/docker.sock"))?;
        Ok(Engine { docker, rt })
    }

    /// Networks, images and containers whose names start with `pic2`.
    pub fn observe(&self) -> Result<(ObservedContainers, u32), Error> {
        let d = &self.docker;
        self.rt.block_on(async {
            let mut out = ObservedContainers::default();
            let filters = HashMap::from([("name", vec!["pic2-"])]);
            let networks = d
                .list_networks(Some(
                    ListNetworksOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(err("listing networks"))?;
            for n in networks {
                if let Some(name) = n.name {
                    let subnets = n
                        .ipam
                        .and_then(|i| i.config)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|c| c.subnet)
                        .collect();
                    out.network_subnets.insert(name.clone(), subnets);
                    out.networks
                        .insert(name, n.labels.unwrap_or_default().into_iter().collect());
                }
            }
            // every image, not only pic2's: the plan checks that the base images it builds
            // from are here (a missing one would make the engine pull from Docker Hub)
            let images = d
                .list_images(Some(ListImagesOptionsBuilder::default().build()))
                .await
                .map_err(err("listing images"))?;
            out.images = images.into_iter().flat_map(|i| i.repo_tags).collect();
            let containers = d
                .list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(err("listing containers"))?;
            for c in containers {
                let Some(name) = c.names.and_then(|n| n.into_iter().next()) else {
                    continue;
                };
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                out.containers.insert(
                    name.trim_start_matches('/').to_string(),
                    ObservedContainer {
                        labels: c.labels.unwrap_or_default().into_iter().collect(),
                        image: c.image.unwrap_or_default(),
                        running: state == "running",
                        state,
                    },
                );
            }
            Ok((out, 3))
        })
    }

    pub fn build_image(&self, image: &ImageContext) -> Result<(), Error> {
        let what = format!("building image {}", image.tag);
        let mut archive = tar::Builder::new(Vec::new());
        for (name, text, mode) in &image.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            archive
                .append_data(&mut header, name, text.as_bytes())
                .map_err(err(what.clone()))?;
        }
        let context = archive.into_inner().map_err(err(what.clone()))?;
        let labels = HashMap::from([("org.pic2.image".to_string(), "runtime".to_string())]);
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&image.tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        self.rt.block_on(async {
            let mut stream =
                self.docker
                    .build_image(options, None, Some(bollard::body_full(context.into())));
            let mut tail: Vec<String> = Vec::new();
            while let Some(item) = stream.next().await {
                let info =
                    item.map_err(|e| Error::docker(&what, format!("{e}\n{}", tail.join(""))))?;
                if let Some(error) = info.error {
                    return Err(Error::docker(&what, format!("{error}\n{}", tail.join(""))));
                }
                if let Some(line) = info.stream {
                    tail.push(line);
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
            }
            Ok(())
        })
    }

    pub fn create_network(&self, n: &DesiredNetwork) -> Result<(), Error> {
        let ipam = n.subnet6.as_ref().map(|s| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(s.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let request = NetworkCreateRequest {
            name: n.name.clone(),
            driver: Some("bridge".into()),
            enable_ipv6: Some(n.subnet6.is_some()),
            ipam,
            labels: Some(n.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.rt
            .block_on(self.docker.create_network(request))
            .map_err(err(format!("creating network {}", n.name)))?;
        Ok(())
    }

    pub fn create_container(&self, c: &DesiredContainer) -> Result<(), Error> {
        let key = |p: &PortMap| format!("{}/tcp", p.container_port);
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &c.ports {
            port_bindings
                .entry(key(p))
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.to_string()),
                });
        }
        let host = HostConfig {
            binds: Some(
                c.mounts
                    .iter()
                    .map(|m| {
                        format!(
                            "{}:{}:{}",
                            m.source,
                            m.target,
                            if m.read_only { "ro" } else { "rw" }
                        )
                    })
                    .collect(),
            ),
            port_bindings: Some(port_bindings),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(c.capabilities.clone()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(c.read_only),
            tmpfs: Some(
                c.tmpfs
                    .iter()
                    .map(|t| match t.split_once(':') {
                        Some((path, extra)) => (
                            path.to_string(),
                            format!("rw,nosuid,nodev,size=64m,{extra}"),
                        ),
                        None => (t.clone(), "rw,nosuid,nodev,size=64m".to_string()),
                    })
                    .collect(),
            ),
            memory: Some(i64::from(c.memory_mb) * 1024 * 1024),
            memory_swap: Some(i64::from(c.memory_mb) * 1024 * 1024),
            pids_limit: Some(i64::from(c.pids_limit)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(c.network.clone()),
            ..Default::default()
        };
        let healthcheck = (!c.healthcheck.is_empty()).then(|| HealthConfig {
            test: Some(
                std::iter::once("CMD".to_string())
                    .chain(c.healthcheck.iter().cloned())
                    .collect(),
            ),
            interval: Some(30_000_000_000),
            timeout: Some(5_000_000_000),
            retries: Some(3),
            start_period: Some(5_000_000_000),
            ..Default::default()
        });
        let body = ContainerCreateBody {
            image: Some(c.image.clone()),
            env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(c.labels.clone().into_iter().collect()),
            exposed_ports: Some(c.ports.iter().map(|p| (key(p), HashMap::new())).collect()),
            healthcheck,
            host_config: Some(host),
            ..Default::default()
        };
        let name = c.name.clone();
        self.rt.block_on(async {
            self.docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                    body,
                )
                .await
                .map_err(err(format!("creating container {name}")))?;
            self.docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .map_err(err(format!("starting container {name}")))
        })
    }

    pub fn remove_container(&self, name: &str) -> Result<(), Error> {
        self.rt.block_on(async {
            self.docker
                .stop_container(
                    name,
                    Some(StopContainerOptionsBuilder::default().t(10).build()),
                )
                .await
                .map_err(err(format!("stopping container {name}")))
                .ok();
            self.docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await
                .map_err(err(format!("removing container {name}")))
        })
    }

    pub fn replace_container(&self, c: &DesiredContainer) -> Result<(), Error> {
        self.remove_container(&c.name)?;
        self.create_container(c)
    }

    pub fn start_container(&self, name: &str) -> Result<(), Error> {
        self.rt
            .block_on(self.docker.start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            ))
            .map_err(err(format!("starting container {name}")))
    }

    /// Runs a container's graceful reload command; a non-zero exit is an error with its output.
    pub fn reload(&self, name: &str, command: &[String]) -> Result<(), Error> {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let (code, output) = self.exec(name, &args)?;
        if code == 0 {
            Ok(())
        } else {
            Err(Error::docker(
                format!("reloading {name} (`{}`)", args.join(" ")),
                format!("exit code {code}: {}", output.trim()),
            ))
        }
    }

    /// Runs a command in a container; returns its exit code and output.
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Result<(i64, String), Error> {
        let what = format!("running `{}` in {name}", cmd.join(" "));
        self.rt.block_on(async {
            let config = ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            };
            let exec = self
                .docker
                .create_exec(name, config)
                .await
                .map_err(err(what.clone()))?;
            let mut output = String::new();
            if let bollard::exec::StartExecResults::Attached {
                output: mut stream, ..
            } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(err(what.clone()))?
            {
                while let Some(Ok(chunk)) = stream.next().await {
                    output.push_str(&chunk.to_string());
                }
            }
            let inspect = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(err(what.clone()))?;
            Ok((inspect.exit_code.unwrap_or(-1), output))
        })
    }
}
