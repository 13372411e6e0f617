//! Turns the raw file into the model: required keys, ranges, role-specific
//! keys, paths resolved against the file's directory. Every refusal is
//! located and says what to change, so the rest of the daemon can trust the
//! values it is given.

use crate::config::error::{ConfigError, Source};
use crate::config::model::{
    AdminApiSection, AdminPrincipal, AdminSection, AuditSection, Config, ConnectionLimits,
    DownstreamSection, HardeningSection, IngestSection, LinkSection, MetricsSection, PathsSection,
    PolicySection, RetentionSection, Role, SignaturesSection, SuiteName,
    DEFAULT_AUDIT_MIN_FREE_BYTES_ACCEPT, DEFAULT_BIND, DEFAULT_BLOCK_SYMBOLS,
    DEFAULT_BUNDLE_LINGER_MS, DEFAULT_BUNDLE_MAX_BYTES, DEFAULT_BUNDLE_MAX_PACKAGES,
    DEFAULT_DOWNSTREAM_ALARM_AFTER_S, DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS,
    DEFAULT_DOWNSTREAM_RETRY_MAX_MS, DEFAULT_DOWNSTREAM_TIMEOUT_S, DEFAULT_EPOCH_GRACE,
    DEFAULT_EPOCH_LENGTH_S, DEFAULT_EPOCH_ORIGIN_UNIX_S, DEFAULT_HEAL_RESEND_AFTER_MS,
    DEFAULT_HEAL_RESEND_MAX_BYTES_PER_S, DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_INGEST_MAX_PACKAGE_BYTES, DEFAULT_INGEST_MAX_QUEUED_PACKAGES,
    DEFAULT_INGEST_MIN_FREE_BYTES, DEFAULT_LEDGER_MAX_AGE_S, DEFAULT_LINK_DOWN_AFTER_MS,
    DEFAULT_LOSS_BUDGET_BURST, DEFAULT_LOSS_BUDGET_PERCENT, DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MTU,
    DEFAULT_PACKAGE_IDLE_TIMEOUT_MS, DEFAULT_RATE_BYTES_PER_S, DEFAULT_RECEIVE_SPOOL_BYTES,
    DEFAULT_REDUNDANCY, DEFAULT_REDUNDANCY_SPACING_MS, DEFAULT_REFUSAL_ALARM_PER_MINUTE,
    DEFAULT_REPAIR_OVERHEAD_PERCENT, DEFAULT_RETENTION_MAX_AGE_S, DEFAULT_RETENTION_MAX_BYTES,
    DEFAULT_SOCKET_BUFFER_BYTES, DEFAULT_TRUST_RELOAD_INTERVAL_S, MAX_BUNDLE_LINGER_MS,
};
use crate::config::raw::{
    RawAdmin, RawConfig, RawDownstream, RawHardening, RawIngest, RawLink, RawPaths, RawSignatures,
};
use ferry_common::located;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Smallest accepted MTU: the IPv6 minimum, below which no real link runs.
pub(crate) const MTU_MIN: usize = 1280;
/// Largest accepted MTU: common jumbo-frame limit.
pub(crate) const MTU_MAX: usize = 9216;
/// Shortest epoch: key evolution more often than this buys nothing and costs
/// key-file writes.
pub(crate) const EPOCH_LENGTH_MIN_S: u64 = 60;
/// Largest FEC block, in source symbols.
pub(crate) const BLOCK_SYMBOLS_MAX: u16 = 16384;
/// Most sends per package.
pub(crate) const REDUNDANCY_MAX: u8 = 8;
/// Link names end up in file names, logs and datagram tags.
pub(crate) const LINK_NAME_MAX_CHARS: usize = 64;
/// Socket buffers below this would drop datagrams at any useful rate.
pub(crate) const SOCKET_BUFFER_MIN_BYTES: usize = 4096;
/// The kernel stores socket buffer sizes in an `int` and doubles them.
pub(crate) const SOCKET_BUFFER_MAX_BYTES: usize = 1 << 30;
/// Receive memory below one MiB cannot hold a single default FEC block.
pub(crate) const MAX_BUFFER_MIN_BYTES: usize = 1 << 20;
/// Longest service user or group name (the `useradd` limit).
pub(crate) const HARDENING_NAME_MAX_CHARS: usize = 32;

/// Checks configuration `text`; `origin` names it in messages and relative
/// paths resolve against `base`.
pub(crate) fn parse_with_base(
    text: &str,
    origin: &str,
    base: &Path,
) -> Result<Config, ConfigError> {
    let source = Source { text, origin };
    let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    Checker { source, base }.check(raw)
}

/// The TLS listener keys `[ingest]` and `[admin_api]` share.
struct TlsEndpoint {
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Vec<PathBuf>,
    crl: Vec<PathBuf>,
}

struct Checker<'a> {
    source: Source<'a>,
    base: &'a Path,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        self.source.error(span, message)
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let Some(link) = raw.link else {
            return Err(self.err(
                0..0,
                "missing table `[link]`: add it with at least `name` and `role`",
            ));
        };
        let Some(paths) = raw.paths else {
            return Err(self.err(
                0..0,
                "missing table `[paths]`: add it with at least `state_dir` and `keys_dir`",
            ));
        };
        let link_header = self.source.header_span(&link.span());
        let link = self.link(link.into_inner(), &link_header)?;
        let paths_header = self.source.header_span(&paths.span());
        let paths = self.paths(paths.into_inner(), &paths_header, link.role)?;
        let retention = match raw.retention {
            None => RetentionSection {
                max_bytes: DEFAULT_RETENTION_MAX_BYTES,
                max_age_s: DEFAULT_RETENTION_MAX_AGE_S,
            },
            Some(r) => {
                if link.role == Role::Egress {
                    let header = self.source.header_span(&r.span());
                    return Err(self.err(
                        header,
                        "`[retention]` applies to the ingress role only; remove it from an egress configuration",
                    ));
                }
                let r = r.into_inner();
                RetentionSection {
                    max_bytes: self
                        .uint(r.max_bytes, "max_bytes", 0, u64::MAX, "bytes")?
                        .unwrap_or(DEFAULT_RETENTION_MAX_BYTES),
                    max_age_s: self
                        .uint(r.max_age_s, "max_age_s", 0, u64::MAX, "seconds")?
                        .unwrap_or(DEFAULT_RETENTION_MAX_AGE_S),
                }
            }
        };
        let ingest = match raw.ingest {
            None => None,
            Some(i) => {
                let header = self.source.header_span(&i.span());
                if link.role == Role::Egress {
                    return Err(self.err(
                        header,
                        "`[ingest]` applies to the ingress role only; remove it from an egress configuration",
                    ));
                }
                Some(self.ingest(i.into_inner(), &header)?)
            }
        };
        let policy = match raw.policy {
            None => None,
            Some(p) => {
                let header = self.source.header_span(&p.span());
                // On the egress side the policy supplies the channels'
                // `egress_profile`s for the second inspection.
                let p = p.into_inner();
                let file = p.file.ok_or_else(|| {
                    self.err(
                        header.clone(),
                        "missing key `file` in `[policy]`: name the policy file, e.g. file = \"/etc/ferry/policy.toml\"",
                    )
                })?;
                let signers = p.signers.map_or(Ok(Vec::new()), |list| {
                    list.into_inner()
                        .into_iter()
                        .map(|v| self.path(v, "signers"))
                        .collect::<Result<Vec<_>, _>>()
                })?;
                let pseudonym_keys = p
                    .pseudonym_keys
                    .map(|v| self.path(v, "pseudonym_keys"))
                    .transpose()?;
                Some(PolicySection {
                    file: self.path(file, "file")?,
                    signers,
                    pseudonym_keys,
                })
            }
        };
        let audit = match raw.audit {
            None => None,
            Some(a) => {
                let header = self.source.header_span(&a.span());
                let a = a.into_inner();
                let dir = a.dir.ok_or_else(|| {
                    self.err(
                        header.clone(),
                        "missing key `dir` in `[audit]`: name the audit log directory, e.g. dir = \"/var/log/ferry/audit\"",
                    )
                })?;
                Some(AuditSection {
                    dir: self.path(dir, "dir")?,
                    min_free_bytes_accept: self
                        .uint(
                            a.min_free_bytes_accept,
                            "min_free_bytes_accept",
                            0,
                            u64::MAX,
                            "bytes",
                        )?
                        .unwrap_or(DEFAULT_AUDIT_MIN_FREE_BYTES_ACCEPT),
                })
            }
        };
        let hardening = match raw.hardening {
            None => HardeningSection::default(),
            Some(h) => {
                let header = self.source.header_span(&h.span());
                self.hardening(h.into_inner(), &header)?
            }
        };
        let metrics = match raw.metrics {
            None => None,
            Some(m) => {
                let header = self.source.header_span(&m.span());
                let listen = m.into_inner().listen.ok_or_else(|| {
                    self.err(
                        header,
                        "missing key `listen` in `[metrics]`: give an address and port, e.g. listen = \"127.0.0.1:9464\"",
                    )
                })?;
                Some(MetricsSection {
                    listen: self.address(&listen, "listen", true)?,
                })
            }
        };
        let admin = match raw.admin {
            None => None,
            Some(a) => Some(self.admin(a.into_inner())?),
        };
        let downstream = match raw.downstream {
            None => None,
            Some(d) => {
                let header = self.source.header_span(&d.span());
                if link.role == Role::Ingress {
                    return Err(self.err(
                        header,
                        "`[downstream]` applies to the egress role only (it delivers to downstream HTTPS endpoints); remove it from an ingress configuration",
                    ));
                }
                Some(self.downstream(d.into_inner(), &header)?)
            }
        };
        let admin_api = match raw.admin_api {
            None => None,
            Some(a) => {
                let header = self.source.header_span(&a.span());
                if admin.is_none() {
                    return Err(self.err(
                        header,
                        "`[admin_api]` needs `[admin]`: the remote admin plane exists only with separated roles; add an [admin] section",
                    ));
                }
                let a = a.into_inner();
                let trust_reload_interval_s = self
                    .uint(
                        a.trust_reload_interval_s,
                        "trust_reload_interval_s",
                        1,
                        3600,
                        "seconds",
                    )?
                    .unwrap_or(DEFAULT_TRUST_RELOAD_INTERVAL_S);
                let t = self.tls_endpoint(
                    "admin_api",
                    &header,
                    [a.listen, a.cert, a.key],
                    a.client_ca,
                    a.crl,
                )?;
                Some(AdminApiSection {
                    listen: t.listen,
                    cert: t.cert,
                    key: t.key,
                    client_ca: t.client_ca,
                    crl: t.crl,
                    trust_reload_interval_s,
                })
            }
        };
        let signatures = match raw.signatures {
            None => None,
            Some(g) => {
                let header = self.source.header_span(&g.span());
                if link.role == Role::Ingress {
                    return Err(self.err(
                        header,
                        "`[signatures]` applies to the egress role only (it applies ClamAV signature packages on the receiving side); remove it from an ingress configuration",
                    ));
                }
                Some(self.signatures(g.into_inner(), &header)?)
            }
        };
        Ok(Config {
            link,
            paths,
            retention,
            ingest,
            policy,
            audit,
            hardening,
            metrics,
            admin,
            downstream,
            admin_api,
            signatures,
        })
    }

    /// `listen`, `cert`, `key` (required, in that order), `client_ca`
    /// (required: client certificates are mandatory) and `crl`.
    fn tls_endpoint(
        &self,
        section: &str,
        header: &Range<usize>,
        [listen, cert, key]: [Option<Spanned<String>>; 3],
        client_ca: Option<Spanned<Vec<Spanned<String>>>>,
        crl: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> Result<TlsEndpoint, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!("missing key `{key}` in `[{section}]`: add it, e.g. {key} = {example}"),
                )
            })
        };
        let listen = required(listen, "listen", "\"127.0.0.1:8443\"")?;
        let listen = self.address(&listen, "listen", true)?;
        let cert = self.path(
            required(cert, "cert", &format!("\"/etc/ferry/tls/{section}.crt\""))?,
            "cert",
        )?;
        let key = self.path(
            required(key, "key", &format!("\"/etc/ferry/tls/{section}.key\""))?,
            "key",
        )?;
        let paths = |v: Option<Spanned<Vec<Spanned<String>>>>, key: &str| {
            v.map_or(Ok(Vec::new()), |list| {
                list.into_inner()
                    .into_iter()
                    .map(|p| self.path(p, key))
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        let client_ca = paths(client_ca, "client_ca")?;
        if client_ca.is_empty() {
            return Err(self.err(
                header.clone(),
                format!("missing key `client_ca` in `[{section}]`: client certificates are mandatory; name the CA that issues them, e.g. client_ca = [\"/etc/ferry/tls/ca.crt\"]"),
            ));
        }
        Ok(TlsEndpoint {
            listen,
            cert,
            key,
            client_ca,
            crl: paths(crl, "crl")?,
        })
    }

    fn downstream(
        &self,
        d: RawDownstream,
        header: &Range<usize>,
    ) -> Result<DownstreamSection, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!(
                        "missing key `{key}` in `[downstream]`: add it, e.g. {key} = {example}"
                    ),
                )
            })
        };
        let ca = required(d.ca, "ca", "\"/etc/ferry/tls/downstream-ca.crt\"")?;
        let cert = required(d.cert, "cert", "\"/etc/ferry/tls/egress-client.crt\"")?;
        let key = required(d.key, "key", "\"/etc/ferry/tls/egress-client.key\"")?;
        let retry_max_span = d.retry_max_ms.as_ref().map(Spanned::span);
        let section = DownstreamSection {
            ca: self.path(ca, "ca")?,
            cert: self.path(cert, "cert")?,
            key: self.path(key, "key")?,
            timeout_s: self
                .uint(d.timeout_s, "timeout_s", 1, 3600, "seconds")?
                .unwrap_or(DEFAULT_DOWNSTREAM_TIMEOUT_S),
            retry_initial_ms: self
                .uint(
                    d.retry_initial_ms,
                    "retry_initial_ms",
                    10,
                    3_600_000,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_DOWNSTREAM_RETRY_INITIAL_MS),
            retry_max_ms: self
                .uint(
                    d.retry_max_ms,
                    "retry_max_ms",
                    10,
                    86_400_000,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_DOWNSTREAM_RETRY_MAX_MS),
            alarm_after_s: self
                .uint(d.alarm_after_s, "alarm_after_s", 0, u64::MAX, "seconds")?
                .unwrap_or(DEFAULT_DOWNSTREAM_ALARM_AFTER_S),
        };
        if section.retry_max_ms < section.retry_initial_ms {
            return Err(self.err(
                retry_max_span.unwrap_or_else(|| header.clone()),
                format!(
                    "`retry_max_ms` ({}) is below `retry_initial_ms` ({}): the longest retry delay must be at least the first",
                    section.retry_max_ms, section.retry_initial_ms
                ),
            ));
        }
        Ok(section)
    }

    fn signatures(
        &self,
        g: RawSignatures,
        header: &Range<usize>,
    ) -> Result<SignaturesSection, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, example: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!(
                        "missing key `{key}` in `[signatures]`: add it, e.g. {key} = {example}"
                    ),
                )
            })
        };
        let channel = required(g.channel, "channel", "\"av-signatures\"")?;
        if channel.get_ref().is_empty() {
            return Err(self.err(
                channel.span(),
                "`channel` must name a channel of the policy",
            ));
        }
        let dir = required(g.database_dir, "database_dir", "\"/var/lib/clamav\"")?;
        let socket = required(g.socket, "socket", "\"/run/clamav/clamd.ctl\"")?;
        let tool = |v: Option<Spanned<String>>, key: &str, default: &str| match v {
            Some(v) => self.path(v, key),
            None => Ok(PathBuf::from(default)),
        };
        Ok(SignaturesSection {
            channel: channel.into_inner(),
            database_dir: self.path(dir, "database_dir")?,
            socket: self.path(socket, "socket")?,
            clamscan: tool(g.clamscan, "clamscan", "clamscan")?,
            sigtool: tool(g.sigtool, "sigtool", "sigtool")?,
            allow_unsigned: g.allow_unsigned.is_some_and(|b| b.into_inner()),
        })
    }

    fn admin(&self, a: RawAdmin) -> Result<AdminSection, ConfigError> {
        let socket = a.socket.map(|p| self.path(p, "socket")).transpose()?;
        let mut seen: Vec<(AdminPrincipal, &str)> = Vec::new();
        let mut roles: Vec<Vec<AdminPrincipal>> = Vec::new();
        for (role, list) in [
            ("sysadmin", a.sysadmin),
            ("secadmin", a.secadmin),
            ("auditor", a.auditor),
            ("reviewer", a.reviewer),
        ] {
            let mut out = Vec::new();
            for v in list.unwrap_or_default() {
                let text = v.get_ref();
                let principal = if let Some(n) = text.strip_prefix("uid:") {
                    n.parse::<u32>().map(AdminPrincipal::Uid).map_err(|_| {
                        self.err(
                            v.span(),
                            format!("`{text}`: after `uid:` comes a number, e.g. \"uid:1001\""),
                        )
                    })?
                } else if (1..=HARDENING_NAME_MAX_CHARS).contains(&text.chars().count())
                    && !text.starts_with('-')
                    && text.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                    })
                {
                    AdminPrincipal::User(text.clone())
                } else {
                    return Err(self.err(
                        v.span(),
                        format!("`{text}` is not a user name: 1 to {HARDENING_NAME_MAX_CHARS} characters from a-z 0-9 _ - ., or \"uid:N\""),
                    ));
                };
                if let Some((_, other)) = seen.iter().find(|(p, _)| *p == principal) {
                    return Err(self.err(
                        v.span(),
                        format!("`{principal}` already holds `{other}`: one person, one role (separation of duties); give `{role}` to someone else"),
                    ));
                }
                seen.push((principal.clone(), role));
                out.push(principal);
            }
            roles.push(out);
        }
        let mut roles = roles.into_iter();
        let mut next = || roles.next().unwrap_or_default();
        Ok(AdminSection {
            socket,
            sysadmin: next(),
            secadmin: next(),
            auditor: next(),
            reviewer: next(),
        })
    }

    fn hardening(
        &self,
        h: RawHardening,
        header: &Range<usize>,
    ) -> Result<HardeningSection, ConfigError> {
        let d = HardeningSection::default();
        let flag = |v: Option<Spanned<bool>>, default: bool| v.map_or(default, |v| *v.get_ref());
        let name = |v: Option<Spanned<String>>, key: &str| {
            v.map(|v| {
                let ok = (1..=HARDENING_NAME_MAX_CHARS).contains(&v.get_ref().chars().count())
                    && v.get_ref().chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                    })
                    && !v.get_ref().starts_with('-');
                if ok {
                    Ok(v.into_inner())
                } else {
                    Err(self.err(
                        v.span(),
                        format!("`{key}` must be a system {key} name: 1 to {HARDENING_NAME_MAX_CHARS} characters from a-z 0-9 _ - ., e.g. {key} = \"ferry\""),
                    ))
                }
            })
            .transpose()
        };
        let group_span = h.group.as_ref().map(Spanned::span);
        let user = name(h.user, "user")?;
        let group = name(h.group, "group")?;
        if let (None, Some(span)) = (&user, group_span) {
            return Err(self.err(
                self.key_span(&span),
                "`group` needs `user`: name the service user too, e.g. user = \"ferry\"",
            ));
        }
        if user.as_deref() == Some("root") {
            return Err(self.err(
                header.clone(),
                "`user` = \"root\" defeats the privilege drop: name an unprivileged service user, e.g. user = \"ferry\"",
            ));
        }
        let paths = |v: Option<Spanned<Vec<Spanned<String>>>>, key: &str| {
            v.map_or(Ok(Vec::new()), |list| {
                list.into_inner()
                    .into_iter()
                    .map(|p| self.path(p, key))
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        Ok(HardeningSection {
            user,
            group,
            drop_privileges: flag(h.drop_privileges, d.drop_privileges),
            forbid_core_dumps: flag(h.forbid_core_dumps, d.forbid_core_dumps),
            no_new_privs: flag(h.no_new_privs, d.no_new_privs),
            landlock: flag(h.landlock, d.landlock),
            extra_read_paths: paths(h.extra_read_paths, "extra_read_paths")?,
            extra_write_paths: paths(h.extra_write_paths, "extra_write_paths")?,
            seccomp: flag(h.seccomp, d.seccomp),
            seccomp_action: h.seccomp_action.map_or(d.seccomp_action, |v| *v.get_ref()),
            close_inherited_fds: flag(h.close_inherited_fds, d.close_inherited_fds),
            sanitize_environment: flag(h.sanitize_environment, d.sanitize_environment),
        })
    }

    fn ingest(&self, i: RawIngest, header: &Range<usize>) -> Result<IngestSection, ConfigError> {
        let limits = self.connection_limits(&i)?;
        let t = self.tls_endpoint(
            "ingest",
            header,
            [i.listen, i.cert, i.key],
            i.client_ca,
            i.crl,
        )?;
        Ok(IngestSection {
            listen: t.listen,
            cert: t.cert,
            key: t.key,
            client_ca: t.client_ca,
            crl: t.crl,
            max_package_bytes: self
                .uint(
                    i.max_package_bytes,
                    "max_package_bytes",
                    1,
                    1 << 40,
                    "bytes",
                )?
                .unwrap_or(DEFAULT_INGEST_MAX_PACKAGE_BYTES),
            min_free_bytes: self
                .uint(i.min_free_bytes, "min_free_bytes", 0, u64::MAX, "bytes")?
                .unwrap_or(DEFAULT_INGEST_MIN_FREE_BYTES),
            max_queued_packages: self
                .uint(
                    i.max_queued_packages,
                    "max_queued_packages",
                    1,
                    u64::MAX,
                    "packages",
                )?
                .unwrap_or(DEFAULT_INGEST_MAX_QUEUED_PACKAGES),
            limits,
            trust_reload_interval_s: self
                .uint(
                    i.trust_reload_interval_s,
                    "trust_reload_interval_s",
                    1,
                    3600,
                    "seconds",
                )?
                .unwrap_or(DEFAULT_TRUST_RELOAD_INTERVAL_S),
            refusal_alarm_per_minute: self
                .uint(
                    i.refusal_alarm_per_minute,
                    "refusal_alarm_per_minute",
                    1,
                    u64::MAX,
                    "refusals",
                )?
                .unwrap_or(DEFAULT_REFUSAL_ALARM_PER_MINUTE),
        })
    }

    /// `[ingest]`'s deadlines and connection caps.
    fn connection_limits(&self, i: &RawIngest) -> Result<ConnectionLimits, ConfigError> {
        let d = ConnectionLimits::default();
        let secs = |v: &Option<Spanned<i64>>, name: &str, default: u64| {
            self.uint(v.clone(), name, 1, 86_400, "seconds")
                .map(|x| x.unwrap_or(default))
        };
        let count = |v: &Option<Spanned<i64>>, name: &str, default: u64| {
            self.uint(v.clone(), name, 1, 1_000_000, "connections")
                .map(|x| x.unwrap_or(default))
        };
        Ok(ConnectionLimits {
            handshake_timeout_s: secs(
                &i.handshake_timeout_s,
                "handshake_timeout_s",
                d.handshake_timeout_s,
            )?,
            header_timeout_s: secs(&i.header_timeout_s, "header_timeout_s", d.header_timeout_s)?,
            idle_timeout_s: secs(&i.idle_timeout_s, "idle_timeout_s", d.idle_timeout_s)?,
            body_idle_timeout_s: secs(
                &i.body_idle_timeout_s,
                "body_idle_timeout_s",
                d.body_idle_timeout_s,
            )?,
            min_body_bytes_per_s: self
                .uint(
                    i.min_body_bytes_per_s.clone(),
                    "min_body_bytes_per_s",
                    0,
                    1 << 40,
                    "bytes per second",
                )?
                .unwrap_or(d.min_body_bytes_per_s),
            max_connections: count(&i.max_connections, "max_connections", d.max_connections)?,
            max_connections_per_identity: count(
                &i.max_connections_per_identity,
                "max_connections_per_identity",
                d.max_connections_per_identity,
            )?,
            max_handshakes_per_address: count(
                &i.max_handshakes_per_address,
                "max_handshakes_per_address",
                d.max_handshakes_per_address,
            )?,
        })
    }

    fn link(&self, l: RawLink, header: &Range<usize>) -> Result<LinkSection, ConfigError> {
        let name = l.name.ok_or_else(|| {
            self.err(
                header.clone(),
                "missing key `name` in `[link]`: add the link name both sides share, e.g. name = \"release-1\"",
            )
        })?;
        let name_ok = (1..=LINK_NAME_MAX_CHARS).contains(&name.get_ref().chars().count())
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(self.err(
                name.span(),
                format!(
                    "`name` must be 1 to {LINK_NAME_MAX_CHARS} characters from A-Z a-z 0-9 . _ -"
                ),
            ));
        }
        let role = l.role.ok_or_else(|| {
            self.err(
                header.clone(),
                "missing key `role` in `[link]`: add role = \"ingress\" (seal and send) or role = \"egress\" (receive and deliver)",
            )
        })?;
        let role_span = role.span();
        let role = *role.get_ref();
        let suite = l.suite.map_or(SuiteName::Intl, |s| *s.get_ref());
        let mtu = self
            .uint(l.mtu, "mtu", MTU_MIN as u64, MTU_MAX as u64, "bytes")?
            .map_or(DEFAULT_MTU, |v| v as usize);

        let ingress_only = [
            ("peer", l.peer.as_ref().map(Spanned::span)),
            ("bind", l.bind.as_ref().map(Spanned::span)),
        ];
        let egress_only = [
            ("listen", l.listen.as_ref().map(Spanned::span)),
            ("udp_gro", l.udp_gro.as_ref().map(Spanned::span)),
        ];
        let (wrong, right) = match role {
            Role::Ingress => (&egress_only[..], "egress"),
            Role::Egress => (&ingress_only[..], "ingress"),
        };
        for (key, span) in wrong {
            if let Some(span) = span {
                return Err(self.err(
                    self.key_span(span),
                    format!(
                        "`{key}` applies to the {right} role only; remove it, or check `role` (line {})",
                        self.line_of(&role_span)
                    ),
                ));
            }
        }
        let bind = match l.bind {
            None => DEFAULT_BIND,
            Some(b) => self.address(&b, "bind", false)?,
        };
        let peer = match (role, &l.peer) {
            (Role::Ingress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `peer` in `[link]`: the ingress role needs the egress side's address, e.g. peer = [\"192.0.2.2:7700\"]",
                ))
            }
            (_, p) => self.addresses(p.as_ref(), "peer", true)?,
        };
        if bind.is_ipv4() {
            // An IPv4 socket cannot send to an IPv6 address; every datagram
            // to it would be lost.
            let spans = l
                .peer
                .iter()
                .flat_map(|p| p.get_ref().iter().map(Spanned::span));
            if let Some((addr, span)) = peer.iter().zip(spans).find(|(a, _)| a.is_ipv6()) {
                return Err(self.err(
                    span,
                    format!(
                        "`peer`: {addr} is IPv6 but `bind` ({bind}) is IPv4; set bind = \"[::]:0\" or use an IPv4 peer"
                    ),
                ));
            }
        }
        let listen = match (role, &l.listen) {
            (Role::Egress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `listen` in `[link]`: the egress role needs the addresses to receive on, e.g. listen = [\"192.0.2.2:7700\"]",
                ))
            }
            (_, p) => self.addresses(p.as_ref(), "listen", true)?,
        };

        let heartbeat_span = l.heartbeat_interval_ms.as_ref().map(Spanned::span);
        let heartbeat_interval_ms = self
            .uint(
                l.heartbeat_interval_ms,
                "heartbeat_interval_ms",
                1,
                u64::MAX,
                "milliseconds",
            )?
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS);
        let link_down_span = l.link_down_after_ms.as_ref().map(Spanned::span);
        let link_down_after_ms = self
            .uint(
                l.link_down_after_ms,
                "link_down_after_ms",
                1,
                u64::MAX,
                "milliseconds",
            )?
            .unwrap_or(DEFAULT_LINK_DOWN_AFTER_MS);
        if link_down_after_ms <= heartbeat_interval_ms {
            let span = link_down_span
                .or(heartbeat_span)
                .unwrap_or_else(|| header.clone());
            return Err(self.err(
                span,
                format!(
                    "`link_down_after_ms` ({link_down_after_ms}) must be greater than `heartbeat_interval_ms` ({heartbeat_interval_ms}), \
                     or the link is reported down between two heartbeats; use about 3.5 times the heartbeat interval"
                ),
            ));
        }

        let repair_overhead_percent = match l.repair_overhead_percent {
            None => DEFAULT_REPAIR_OVERHEAD_PERCENT,
            Some(p) => {
                let v = *p.get_ref();
                if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                    return Err(self.err(
                        p.span(),
                        format!("`repair_overhead_percent` must be above 0 and at most 100 (percent of source symbols), got {v}"),
                    ));
                }
                v
            }
        };

        let loss_budget_percent = match l.loss_budget_percent {
            None => DEFAULT_LOSS_BUDGET_PERCENT,
            Some(p) => {
                let v = *p.get_ref();
                let max = ferry_protocol::budget::MAX_BUDGET_LOSS * 100.0;
                if !(v.is_finite() && (0.0..=max).contains(&v)) {
                    return Err(self.err(
                        p.span(),
                        format!("`loss_budget_percent` must be within 0..={max} (percent of datagrams the link may lose; 0 switches the budget off), got {v}"),
                    ));
                }
                v
            }
        };

        let loss_budget_burst = self
            .uint(
                l.loss_budget_burst,
                "loss_budget_burst",
                1,
                u64::from(ferry_protocol::budget::MAX_BUDGET_BURST),
                "datagrams lost in a row",
            )?
            .map_or(DEFAULT_LOSS_BUDGET_BURST, |v| v as u16);
        let udp_gso_segments =
            self.udp_gso_segments(l.udp_gso_segments, loss_budget_percent, loss_budget_burst)?;

        Ok(LinkSection {
            name: name.into_inner(),
            role,
            suite,
            mtu,
            peer,
            bind,
            listen,
            rate_bytes_per_s: self
                .uint(
                    l.rate_bytes_per_s,
                    "rate_bytes_per_s",
                    0,
                    u64::MAX,
                    "bytes per second",
                )?
                .unwrap_or(DEFAULT_RATE_BYTES_PER_S),
            socket_buffer_bytes: self
                .uint(
                    l.socket_buffer_bytes,
                    "socket_buffer_bytes",
                    SOCKET_BUFFER_MIN_BYTES as u64,
                    SOCKET_BUFFER_MAX_BYTES as u64,
                    "bytes",
                )?
                .map_or(DEFAULT_SOCKET_BUFFER_BYTES, |v| v as usize),
            heartbeat_interval_ms,
            link_down_after_ms,
            epoch_length_s: self
                .uint(
                    l.epoch_length_s,
                    "epoch_length_s",
                    EPOCH_LENGTH_MIN_S,
                    u64::MAX,
                    "seconds",
                )?
                .unwrap_or(DEFAULT_EPOCH_LENGTH_S),
            epoch_origin_unix_s: self
                .uint(
                    l.epoch_origin_unix_s,
                    "epoch_origin_unix_s",
                    0,
                    u64::MAX,
                    "seconds since 1970",
                )?
                .unwrap_or(DEFAULT_EPOCH_ORIGIN_UNIX_S),
            epoch_grace: self
                .uint(
                    l.epoch_grace,
                    "epoch_grace",
                    0,
                    u64::from(u32::MAX),
                    "epochs",
                )?
                .map_or(DEFAULT_EPOCH_GRACE, |v| v as u32),
            repair_overhead_percent,
            loss_budget_percent,
            loss_budget_burst,
            udp_gso_segments,
            udp_gro: l.udp_gro.is_none_or(|v| v.into_inner()),
            block_symbols: self
                .uint(
                    l.block_symbols,
                    "block_symbols",
                    1,
                    u64::from(BLOCK_SYMBOLS_MAX),
                    "source symbols per FEC block",
                )?
                .map_or(DEFAULT_BLOCK_SYMBOLS, |v| v as u16),
            redundancy: self
                .uint(
                    l.redundancy,
                    "redundancy",
                    1,
                    u64::from(REDUNDANCY_MAX),
                    "sends per package",
                )?
                .map_or(DEFAULT_REDUNDANCY, |v| v as u8),
            redundancy_spacing_ms: self
                .uint(
                    l.redundancy_spacing_ms,
                    "redundancy_spacing_ms",
                    0,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_REDUNDANCY_SPACING_MS),
            max_buffer_bytes: self
                .uint(
                    l.max_buffer_bytes,
                    "max_buffer_bytes",
                    MAX_BUFFER_MIN_BYTES as u64,
                    usize::MAX as u64,
                    "bytes",
                )?
                .map_or(DEFAULT_MAX_BUFFER_BYTES, |v| v as usize),
            receive_spool_bytes: self
                .uint(
                    l.receive_spool_bytes,
                    "receive_spool_bytes",
                    0,
                    u64::MAX,
                    "bytes",
                )?
                .unwrap_or(DEFAULT_RECEIVE_SPOOL_BYTES),
            package_idle_timeout_ms: self
                .uint(
                    l.package_idle_timeout_ms,
                    "package_idle_timeout_ms",
                    1,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_PACKAGE_IDLE_TIMEOUT_MS),
            ledger_max_age_s: self
                .uint(
                    l.ledger_max_age_s,
                    "ledger_max_age_s",
                    0,
                    u64::MAX,
                    "seconds",
                )?
                .unwrap_or(DEFAULT_LEDGER_MAX_AGE_S),
            heal_resend_after_ms: self
                .uint(
                    l.heal_resend_after_ms,
                    "heal_resend_after_ms",
                    1,
                    u64::MAX,
                    "milliseconds",
                )?
                .unwrap_or(DEFAULT_HEAL_RESEND_AFTER_MS),
            heal_resend_max_bytes_per_s: self
                .uint(
                    l.heal_resend_max_bytes_per_s,
                    "heal_resend_max_bytes_per_s",
                    0,
                    u64::MAX,
                    "bytes per second",
                )?
                .unwrap_or(DEFAULT_HEAL_RESEND_MAX_BYTES_PER_S),
            bundle_max_packages: self
                .uint(
                    l.bundle_max_packages,
                    "bundle_max_packages",
                    1,
                    ferry_protocol::manifest::MAX_BUNDLE_MEMBERS,
                    "packages per bundle (1 = no bundles)",
                )?
                .map_or(DEFAULT_BUNDLE_MAX_PACKAGES, |v| v as u16),
            bundle_max_bytes: self
                .uint(
                    l.bundle_max_bytes,
                    "bundle_max_bytes",
                    1,
                    ferry_protocol::bundle::MAX_BUNDLE_BYTES,
                    "bytes",
                )?
                .unwrap_or(DEFAULT_BUNDLE_MAX_BYTES),
            bundle_linger_ms: self
                .uint(
                    l.bundle_linger_ms,
                    "bundle_linger_ms",
                    0,
                    MAX_BUNDLE_LINGER_MS,
                    "milliseconds (0 = a bundle never waits for more packages)",
                )?
                .unwrap_or(DEFAULT_BUNDLE_LINGER_MS),
        })
    }

    fn paths(
        &self,
        p: RawPaths,
        header: &Range<usize>,
        role: Role,
    ) -> Result<PathsSection, ConfigError> {
        let required = |v: Option<Spanned<String>>, key: &str, what: &str| {
            v.ok_or_else(|| {
                self.err(
                    header.clone(),
                    format!("missing key `{key}` in `[paths]`: add the {what} directory, e.g. {key} = \"/var/lib/ferry\""),
                )
            })
        };
        let state_dir = self.path(required(p.state_dir, "state_dir", "state")?, "state_dir")?;
        let keys_dir = self.path(required(p.keys_dir, "keys_dir", "key")?, "keys_dir")?;
        let passphrase_file = p
            .passphrase_file
            .map(|v| self.path(v, "passphrase_file"))
            .transpose()?;
        let certs_dir = p.certs_dir.map(|v| self.path(v, "certs_dir")).transpose()?;
        let (wrong, wrong_key, right) = match role {
            Role::Ingress => (&p.outbox_dir, "outbox_dir", "egress"),
            Role::Egress => (&p.spool_dir, "spool_dir", "ingress"),
        };
        if let Some(w) = wrong {
            return Err(self.err(
                self.key_span(&w.span()),
                format!("`{wrong_key}` applies to the {right} role only; remove it, or check `role` in `[link]`"),
            ));
        }
        let spool_dir = match (role, p.spool_dir) {
            (Role::Ingress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `spool_dir` in `[paths]`: the ingress role takes files to send from it, e.g. spool_dir = \"/var/spool/ferry/out\"",
                ))
            }
            (_, v) => v.map(|v| self.path(v, "spool_dir")).transpose()?,
        };
        let outbox_dir = match (role, p.outbox_dir) {
            (Role::Egress, None) => {
                return Err(self.err(
                    header.clone(),
                    "missing key `outbox_dir` in `[paths]`: the egress role delivers files into it, e.g. outbox_dir = \"/srv/ferry/in\"",
                ))
            }
            (_, v) => v.map(|v| self.path(v, "outbox_dir")).transpose()?,
        };
        Ok(PathsSection {
            state_dir,
            keys_dir,
            passphrase_file,
            certs_dir,
            spool_dir,
            outbox_dir,
        })
    }

    fn path(&self, v: Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        if v.get_ref().is_empty() || v.get_ref().contains('\0') {
            return Err(self.err(v.span(), format!("`{key}` must be a non-empty path")));
        }
        let p = Path::new(v.get_ref());
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        })
    }

    fn addresses(
        &self,
        v: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
        need_port: bool,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        if v.get_ref().is_empty() {
            return Err(self.err(
                v.span(),
                format!("`{key}` is empty: give at least one address, e.g. [\"192.0.2.2:7700\"]"),
            ));
        }
        v.get_ref()
            .iter()
            .map(|a| self.address(a, key, need_port))
            .collect()
    }

    fn address(
        &self,
        a: &Spanned<String>,
        key: &str,
        need_port: bool,
    ) -> Result<SocketAddr, ConfigError> {
        let addr: SocketAddr = a.get_ref().parse().map_err(|_| {
            self.err(
                a.span(),
                format!(
                    "`{key}`: \"{}\" is not an IP address with a port; write e.g. \"192.0.2.2:7700\" or \"[2001:db8::2]:7700\" (host names are not resolved)",
                    a.get_ref()
                ),
            )
        })?;
        if need_port && addr.port() == 0 {
            return Err(self.err(
                a.span(),
                format!("`{key}`: port 0 is not usable here; give a fixed port"),
            ));
        }
        if key == "peer" && addr.ip().is_unspecified() {
            return Err(self.err(
                a.span(),
                "`peer`: an unspecified address (0.0.0.0 or ::) is not a destination; give the egress side's address",
            ));
        }
        Ok(addr)
    }

    /// Checks an integer key against its range; `None` when absent.
    /// `udp_gso_segments`: by default the loss budget's burst (1, GSO off,
    /// without a budget). More than the burst is refused: a veth or a
    /// loopback passes a super-packet whole and loses it whole, a burst the
    /// budget's interleaving must cover.
    fn udp_gso_segments(
        &self,
        v: Option<Spanned<i64>>,
        loss_budget_percent: f64,
        burst: u16,
    ) -> Result<u16, ConfigError> {
        let budget = loss_budget_percent > 0.0;
        let span = v.as_ref().map(|v| v.span());
        let Some(n) = self.uint(
            v,
            "udp_gso_segments",
            1,
            ferry_protocol::budget::MAX_BUDGET_BURST.into(),
            "datagrams per UDP GSO message; 1 switches GSO off",
        )?
        else {
            return Ok(if budget { burst } else { 1 });
        };
        let span = span.unwrap_or_default();
        if !budget && n > 1 {
            return Err(self.err(
                span,
                format!("`udp_gso_segments` ({n}) needs a loss budget: a super-packet lost whole is a burst of {n} datagrams, and with `loss_budget_percent = 0` nothing spreads it over the FEC blocks; set `loss_budget_percent`, or `udp_gso_segments = 1`"),
            ));
        }
        if budget && n > u64::from(burst) {
            return Err(self.err(
                span,
                format!("`udp_gso_segments` ({n}) exceeds `loss_budget_burst` ({burst}): a super-packet lost whole is a burst of {n} datagrams, longer than the interleaving spreads; raise `loss_budget_burst` to {n} or lower `udp_gso_segments`"),
            ));
        }
        Ok(n as u16)
    }

    fn uint(
        &self,
        v: Option<Spanned<i64>>,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(u) if (min..=max).contains(&u) => Ok(Some(u)),
            _ => {
                let range = if max >= i64::MAX as u64 {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                Err(self.err(
                    v.span(),
                    format!("`{key}` must be {range} ({unit}), got {n}"),
                ))
            }
        }
    }

    /// Widens a value span to start at its key, so the caret points at the
    /// key an operator has to remove.
    fn key_span(&self, value: &Range<usize>) -> Range<usize> {
        let text = self.source.text;
        let start = located::floor_char_boundary(text, value.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let indent = text[line_start..start].len() - text[line_start..start].trim_start().len();
        (line_start + indent)..value.end
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        located::line_of(self.source.text, span.start, &[])
    }
}
