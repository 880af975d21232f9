//! `register_service` (docs/dcs.md, "Consul (`ConsulDcs`)"): each member is
//! a service of the local Consul agent, tagged by its role, with an HTTP
//! check against its REST API's role endpoint, so that
//! `primary.<scope>.service.consul` resolves to the primary. What Patroni's
//! `Consul._update_service` registers, field for field.

use serde_json::{Value, json};

use super::MemberData;

/// The service settings of the `consul` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// `service_tags`, sorted (Patroni sorts them).
    pub tags: Vec<String>,
    /// `service_check_interval` (default `5s`).
    pub interval: String,
    pub tls_server_name: Option<String>,
}

impl ServiceSettings {
    /// From the section; `None` unless `register_service: true`.
    pub fn from_config(c: &crate::config::consul::Consul) -> Option<ServiceSettings> {
        if c.register_service != Some(true) {
            return None;
        }
        let mut tags = c.service_tags.clone().unwrap_or_default();
        tags.sort();
        Some(ServiceSettings {
            tags,
            interval: c
                .service_check_interval
                .clone()
                .unwrap_or_else(|| "5s".into()),
            tls_server_name: c.service_check_tls_server_name.clone(),
        })
    }
}

/// Patroni's `service_name_from_scope_name`: lower case; `.`, ` ` and `_`
/// become `-`, any other character outside `[a-z0-9-]` `u` and its code
/// point in four digits; at most 230 characters (253 minus `replica.` and
/// `.service.consul`), so the DNS name stays valid.
pub fn service_name(scope: &str) -> String {
    let mut out = String::new();
    for c in scope.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            '.' | ' ' | '_' => out.push('-'),
            c => out.push_str(&format!("u{:04}", c as u32)),
        }
    }
    out.chars().take(230).collect()
}

/// What to do with this member's service for `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceAction {
    /// `PUT /v1/agent/service/register` with this body.
    Register(Value),
    /// `PUT /v1/agent/service/deregister/<id>` (PostgreSQL stopped).
    Deregister,
    /// Nothing (starting, an unknown role, fields missing).
    None,
}

/// The registration Patroni makes for `data`: registered while PostgreSQL
/// runs as primary, replica or standby leader (tags: `service_tags`, the
/// role with `_` as `-`, and `master` beside `primary`), deregistered when
/// it is stopped. `session_ttl` is the session's TTL: a critical check
/// deregisters the service after ten of them.
pub fn action(
    settings: &ServiceSettings,
    scope: &str,
    name: &str,
    data: &MemberData,
    session_ttl: std::time::Duration,
) -> ServiceAction {
    if data.state == "stopped" {
        return ServiceAction::Deregister;
    }
    if data.state != "running"
        || !matches!(data.role.as_str(), "primary" | "replica" | "standby_leader")
    {
        return ServiceAction::None;
    }
    let role = data.role.replace('_', "-");
    let (Ok(mut api), Ok(conn)) = (
        url::Url::parse(&data.api_url),
        url::Url::parse(&data.conn_url),
    ) else {
        return ServiceAction::None;
    };
    api.set_path(&format!("/{role}"));
    let mut check = json!({
        "HTTP": api.as_str(),
        "Interval": settings.interval,
        "DeregisterCriticalServiceAfter": format!("{}s", (session_ttl * 10).as_secs_f64()),
    });
    if let Some(n) = &settings.tls_server_name {
        check["TLSServerName"] = Value::String(n.clone());
    }
    let mut tags = settings.tags.clone();
    tags.push(role);
    if data.role == "primary" {
        tags.push("master".into());
    }
    ServiceAction::Register(json!({
        "Name": service_name(scope),
        "ID": service_id(scope, name),
        "Address": conn.host_str().unwrap_or_default(),
        "Port": conn.port().unwrap_or(5432),
        "Check": check,
        "Tags": tags,
        "EnableTagOverride": true,
    }))
}

/// `<scope>/<name>`, Patroni's service ID.
pub fn service_id(scope: &str, name: &str) -> String {
    format!("{scope}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> ServiceSettings {
        ServiceSettings {
            tags: vec!["dc-a".into()],
            interval: "5s".into(),
            tls_server_name: None,
        }
    }

    fn member(role: &str, state: &str) -> MemberData {
        MemberData {
            conn_url: "postgres://10.0.0.1:5433/postgres".into(),
            api_url: "http://10.0.0.1:8008/patroni".into(),
            state: state.into(),
            role: role.into(),
            ..MemberData::default()
        }
    }

    #[test]
    fn service_names_as_patroni_makes_them() {
        assert_eq!(service_name("batman"), "batman");
        assert_eq!(service_name("Bat.Man_1 x"), "bat-man-1-x");
        assert_eq!(service_name("a+b"), "au0043b");
        assert_eq!(service_name(&"x".repeat(300)).len(), 230);
    }

    #[test]
    fn primary_is_tagged_primary_and_master_with_a_check_on_its_role() {
        let ServiceAction::Register(body) = action(
            &settings(),
            "batman",
            "n1",
            &member("primary", "running"),
            Duration::from_secs(15),
        ) else {
            panic!("no registration");
        };
        assert_eq!(body["Name"], "batman");
        assert_eq!(body["ID"], "batman/n1");
        assert_eq!(body["Address"], "10.0.0.1");
        assert_eq!(body["Port"], 5433);
        assert_eq!(body["Tags"], json!(["dc-a", "primary", "master"]));
        assert_eq!(body["Check"]["HTTP"], "http://10.0.0.1:8008/primary");
        assert_eq!(body["Check"]["Interval"], "5s");
        assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "150s");
        assert_eq!(body["EnableTagOverride"], true);
    }

    #[test]
    fn replica_and_standby_leader_tags() {
        let tags = |role| match action(
            &settings(),
            "b",
            "n",
            &member(role, "running"),
            Duration::from_secs(5),
        ) {
            ServiceAction::Register(b) => b["Tags"].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(tags("replica"), json!(["dc-a", "replica"]));
        assert_eq!(tags("standby_leader"), json!(["dc-a", "standby-leader"]));
    }

    #[test]
    fn stopped_deregisters_and_starting_does_nothing() {
        let d = Duration::from_secs(5);
        assert_eq!(
            action(&settings(), "b", "n", &member("replica", "stopped"), d),
            ServiceAction::Deregister
        );
        assert_eq!(
            action(&settings(), "b", "n", &member("replica", "starting"), d),
            ServiceAction::None
        );
        assert_eq!(
            action(
                &settings(),
                "b",
                "n",
                &member("uninitialized", "running"),
                d
            ),
            ServiceAction::None
        );
    }
}
