//! The agent's services and checks, and the catalog and health views of
//! them (docs "Agent Service HTTP API", "Agent Check HTTP API", "Health
//! HTTP API", "Catalog HTTP API"). One node: the emulated agent's.

use std::time::Duration;

use serde_json::{Value, json};

use super::duration;
use super::store::{ApiError, Check, CheckStatus, EmulatorConfig, Service, State, ci_field, now};

fn str_field(v: &Value, name: &str) -> Option<String> {
    ci_field(v, name).and_then(Value::as_str).map(str::to_owned)
}

fn dur_field(v: &Value, name: &str) -> Result<Option<Duration>, ApiError> {
    match str_field(v, name) {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => duration::parse(&s).map(Some).ok_or_else(|| {
            ApiError::new(
                400,
                format!("Request decode failed: {name}: bad duration {s:?}"),
            )
        }),
    }
}

/// A check definition (the `Check`/`Checks` of a service, or the body of
/// `PUT /v1/agent/check/register`). A new check starts `critical` unless
/// `Status` says otherwise (docs "Agent Check HTTP API": Status).
fn check_from(def: &Value, id: String, service_id: Option<String>) -> Result<Check, ApiError> {
    let status = match str_field(def, "Status").as_deref() {
        None | Some("") | Some("critical") => CheckStatus::Critical,
        Some("passing") => CheckStatus::Passing,
        Some("warning") => CheckStatus::Warning,
        Some(other) => {
            return Err(ApiError::new(
                400,
                format!("Invalid check status {other:?}"),
            ));
        }
    };
    let http = str_field(def, "HTTP");
    let interval = dur_field(def, "Interval")?;
    let ttl = dur_field(def, "TTL")?;
    if http.is_some() && interval.is_none() {
        return Err(ApiError::new(
            400,
            "Interval must be > 0 for Script, HTTP, or TCP checks",
        ));
    }
    Ok(Check {
        name: str_field(def, "Name").unwrap_or_else(|| id.clone()),
        id,
        service_id,
        status,
        output: String::new(),
        http,
        interval,
        tls_server_name: str_field(def, "TLSServerName"),
        tls_skip_verify: ci_field(def, "TLSSkipVerify")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ttl_deadline: ttl.map(|t| now() + t),
        ttl,
        deregister_critical_after: str_field(def, "DeregisterCriticalServiceAfter"),
    })
}

impl State {
    /// `PUT /v1/agent/service/register`: `ID` defaults to `Name`; a
    /// registration of an existing ID replaces it and its checks. The
    /// checks of service `<id>` are named `service:<id>` (one check) or
    /// `service:<id>:<n>` (several, from 1).
    pub fn service_register(&mut self, body: &Value) -> Result<Vec<String>, ApiError> {
        let name = str_field(body, "Name")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::new(400, "Missing service name"))?;
        let id = str_field(body, "ID")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| name.clone());
        let mut defs: Vec<Value> = Vec::new();
        if let Some(c) = ci_field(body, "Check").filter(|c| c.is_object()) {
            defs.push(c.clone());
        }
        if let Some(Value::Array(cs)) = ci_field(body, "Checks") {
            defs.extend(cs.iter().cloned());
        }
        let mut checks = Vec::new();
        let several = defs.len() > 1;
        for (i, def) in defs.iter().enumerate() {
            let cid = str_field(def, "CheckID")
                .or_else(|| str_field(def, "ID"))
                .unwrap_or_else(|| {
                    if several {
                        format!("service:{id}:{}", i + 1)
                    } else {
                        format!("service:{id}")
                    }
                });
            let mut c = check_from(def, cid, Some(id.clone()))?;
            if str_field(def, "Name").is_none() {
                c.name = format!("Service '{name}' check");
            }
            checks.push(c);
        }
        let port = ci_field(body, "Port").and_then(Value::as_u64).unwrap_or(0);
        self.index += 1;
        let idx = self.index;
        let create_index = self.services.get(&id).map_or(idx, |s| s.create_index);
        self.services.insert(
            id.clone(),
            Service {
                id: id.clone(),
                name,
                tags: ci_field(body, "Tags")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                address: str_field(body, "Address").unwrap_or_default(),
                port: u16::try_from(port).map_err(|_| ApiError::new(400, "bad Port"))?,
                enable_tag_override: ci_field(body, "EnableTagOverride")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                create_index,
                modify_index: idx,
            },
        );
        // Checks of the service not in the new definition go (and the
        // sessions on them with them, at the next expiry pass).
        self.checks
            .retain(|_, c| c.service_id.as_deref() != Some(id.as_str()));
        let ids = checks.iter().map(|c| c.id.clone()).collect();
        for c in checks {
            self.checks.insert(c.id.clone(), c);
        }
        Ok(ids)
    }

    /// `PUT /v1/agent/service/deregister/<id>`: the service and its checks
    /// go; an unknown ID is a 404.
    pub fn service_deregister(&mut self, id: &str) -> Result<(), ApiError> {
        if self.services.remove(id).is_none() {
            return Err(ApiError::new(
                404,
                format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                ),
            ));
        }
        self.checks
            .retain(|_, c| c.service_id.as_deref() != Some(id));
        self.index += 1;
        Ok(())
    }

    /// `PUT /v1/agent/check/register`.
    pub fn check_register(&mut self, body: &Value) -> Result<String, ApiError> {
        let name = str_field(body, "Name")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::new(400, "Missing check name"))?;
        let id = str_field(body, "ID")
            .or_else(|| str_field(body, "CheckID"))
            .unwrap_or_else(|| name.clone());
        let service_id = str_field(body, "ServiceID").filter(|s| !s.is_empty());
        if let Some(s) = &service_id
            && !self.services.contains_key(s)
        {
            return Err(ApiError::new(
                500,
                format!("ServiceID {s:?} does not exist"),
            ));
        }
        let mut c = check_from(body, id.clone(), service_id)?;
        c.name = name;
        self.checks.insert(id.clone(), c);
        self.index += 1;
        Ok(id)
    }

    /// `PUT /v1/agent/check/deregister/<id>`.
    pub fn check_deregister(&mut self, id: &str) -> Result<(), ApiError> {
        if self.checks.remove(id).is_none() {
            return Err(ApiError::new(404, format!("Unknown check ID {id:?}")));
        }
        self.index += 1;
        Ok(())
    }

    /// `PUT /v1/agent/check/{pass,warn,fail}/<id>` (a TTL check's update,
    /// which also restarts its TTL), and the HTTP checker's result.
    pub fn check_update(
        &mut self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), ApiError> {
        let Some(c) = self.checks.get_mut(id) else {
            return Err(ApiError::new(404, format!("Unknown check ID {id:?}")));
        };
        if let Some(t) = c.ttl {
            c.ttl_deadline = Some(now() + t);
        }
        if c.status != status {
            c.status = status;
            self.index += 1;
        }
        c.output = output.to_owned();
        Ok(())
    }

    fn check_json(&self, c: &Check, cfg: &EmulatorConfig) -> Value {
        let service = c.service_id.as_ref().and_then(|s| self.services.get(s));
        json!({
            "Node": cfg.node_name,
            "CheckID": c.id,
            "Name": c.name,
            "Status": c.status.as_str(),
            "Notes": "",
            "Output": c.output,
            "ServiceID": c.service_id.clone().unwrap_or_default(),
            "ServiceName": service.map(|s| s.name.clone()).unwrap_or_default(),
            "ServiceTags": service.map(|s| s.tags.clone()).unwrap_or_default(),
            "Type": if c.http.is_some() { "http" } else if c.ttl.is_some() { "ttl" } else { "" },
            "Definition": {
                "HTTP": c.http.clone().unwrap_or_default(),
                "Interval": c.interval.map(duration::format).unwrap_or_default(),
                "TLSServerName": c.tls_server_name.clone().unwrap_or_default(),
                "DeregisterCriticalServiceAfter": c.deregister_critical_after.clone().unwrap_or_default(),
            },
        })
    }

    fn service_json(s: &Service) -> Value {
        json!({
            "ID": s.id,
            "Service": s.name,
            "Tags": s.tags,
            "Address": s.address,
            "Port": s.port,
            "EnableTagOverride": s.enable_tag_override,
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        })
    }

    /// `GET /v1/agent/services`: `{id: service}`.
    pub fn agent_services(&self) -> Value {
        Value::Object(
            self.services
                .values()
                .map(|s| (s.id.clone(), State::service_json(s)))
                .collect(),
        )
    }

    /// `GET /v1/agent/checks`: `{id: check}`.
    pub fn agent_checks(&self, cfg: &EmulatorConfig) -> Value {
        Value::Object(
            self.checks
                .values()
                .map(|c| (c.id.clone(), self.check_json(c, cfg)))
                .collect(),
        )
    }

    fn instances<'a>(
        &'a self,
        name: &'a str,
        tag: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .values()
            .filter(move |s| s.name == name && tag.is_none_or(|t| s.tags.iter().any(|x| x == t)))
    }

    /// The node's checks and the service's: what health reads return with
    /// an instance.
    fn instance_checks(&self, s: &Service) -> Vec<&Check> {
        self.checks
            .values()
            .filter(|c| c.service_id.is_none() || c.service_id.as_deref() == Some(s.id.as_str()))
            .collect()
    }

    /// `GET /v1/health/service/<name>[?tag=..][&passing]`: instances with
    /// their node and checks; `passing` keeps instances whose every check
    /// passes.
    pub fn health_service(
        &self,
        name: &str,
        tag: Option<&str>,
        passing: bool,
        cfg: &EmulatorConfig,
    ) -> Value {
        let out: Vec<Value> = self
            .instances(name, tag)
            .filter(|s| {
                !passing
                    || self
                        .instance_checks(s)
                        .iter()
                        .all(|c| c.status == CheckStatus::Passing)
            })
            .map(|s| {
                json!({
                    "Node": { "Node": cfg.node_name, "Address": "127.0.0.1", "Datacenter": cfg.datacenter },
                    "Service": State::service_json(s),
                    "Checks": self.instance_checks(s).iter().map(|c| self.check_json(c, cfg)).collect::<Vec<_>>(),
                })
            })
            .collect();
        Value::Array(out)
    }

    /// `GET /v1/catalog/service/<name>[?tag=..]`.
    pub fn catalog_service(&self, name: &str, tag: Option<&str>, cfg: &EmulatorConfig) -> Value {
        Value::Array(
            self.instances(name, tag)
                .map(|s| {
                    json!({
                        "Node": cfg.node_name,
                        "Address": "127.0.0.1",
                        "Datacenter": cfg.datacenter,
                        "ServiceID": s.id,
                        "ServiceName": s.name,
                        "ServiceTags": s.tags,
                        "ServiceAddress": s.address,
                        "ServicePort": s.port,
                        "ServiceEnableTagOverride": s.enable_tag_override,
                        "CreateIndex": s.create_index,
                        "ModifyIndex": s.modify_index,
                    })
                })
                .collect(),
        )
    }

    /// `GET /v1/catalog/services`: `{name: [tags]}`.
    pub fn catalog_services(&self) -> Value {
        let mut out = serde_json::Map::new();
        for s in self.services.values() {
            let tags = out
                .entry(s.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = tags {
                for t in &s.tags {
                    if !a.iter().any(|x| x == t) {
                        a.push(Value::String(t.clone()));
                    }
                }
            }
        }
        Value::Object(out)
    }
}
