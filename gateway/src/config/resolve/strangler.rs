//! Resolving the Strangler Fig blocks of a route: `split` and `shadow`.

use http::{HeaderName, Method};

use super::super::load::Parsed;
use super::super::model::{BackendId, Handler, Shadow, Split, SplitTarget, Sticky, Team};
use super::super::raw::{self, Compare, RoutesFile};
use super::Resolver;
use super::routes::Known;
use super::source::{self, Source};

impl Resolver<'_> {
    /// A backend reference: its handle, or an error naming both places.
    pub(super) fn backend_ref(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        name: &str,
        known: &Known<'_>,
    ) -> Option<BackendId> {
        if let Some(id) = known.backend_ids.get(name) {
            return Some(*id);
        }
        if !known.broken_backends.contains(&name) {
            self.errors.push(file.diag(
                key,
                format!(
                    "unknown backend `{name}`; {}",
                    known.defined("backends", known.backend_ids.keys())
                ),
            ));
        }
        None
    }

    pub(super) fn split(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        s: &raw::Split,
        team: &Team,
        known: &Known<'_>,
    ) -> Option<Handler> {
        let key = format!("{key}.split");
        let before = self.errors.len();
        if s.targets.is_empty() {
            self.errors.push(file.diag(
                format!("{key}.targets"),
                "a split needs at least one target",
            ));
        }
        if s.targets.iter().all(|t| t.weight == 0) && !s.targets.is_empty() {
            self.errors.push(file.diag(
                format!("{key}.targets"),
                "the weights add up to 0: nothing could be served",
            ));
        }
        let mut targets = Vec::new();
        for (i, t) in s.targets.iter().enumerate() {
            if s.targets[..i].iter().any(|o| o.backend == t.backend) {
                self.errors.push(file.diag(
                    format!("{key}.targets[{i}].backend"),
                    format!("backend `{}` is a target twice", t.backend),
                ));
            }
            if let Some(backend) = self.backend_ref(
                file,
                &format!("{key}.targets[{i}].backend"),
                &t.backend,
                known,
            ) {
                targets.push(SplitTarget {
                    backend,
                    weight: t.weight,
                });
            }
        }
        let sticky = s.sticky.as_deref().and_then(|text| {
            let problem = match source::parse(text) {
                Ok(Some(Source::Ip)) => return Some(Sticky::Ip),
                Ok(Some(Source::Cookie(name))) => return Some(Sticky::Cookie(name)),
                Ok(Some(Source::Header(h))) => return Some(Sticky::Header(h)),
                Ok(Some(Source::Claim(name))) => return Some(Sticky::Claim(name)),
                Ok(_) => format!("`{text}`: expected cookie:NAME, header:NAME, claim:NAME or ip"),
                Err(bad_name) => bad_name,
            };
            self.errors
                .push(file.diag(format!("{key}.sticky"), problem));
            None
        });
        let override_header = s.override_.as_deref().and_then(|text| {
            match text
                .strip_prefix("header:")
                .map(|n| HeaderName::from_bytes(n.as_bytes()))
            {
                Some(Ok(h)) => Some(h),
                _ => {
                    self.errors.push(file.diag(
                        format!("{key}.override"),
                        format!("`{text}`: expected header:NAME"),
                    ));
                    None
                }
            }
        });
        if self.errors.len() != before {
            return None;
        }
        let strip_prefix = if team.prefix == "/" {
            0
        } else {
            team.prefix.len()
        };
        Some(Handler::Split(Split {
            targets,
            sticky,
            override_header,
            strip_prefix,
        }))
    }

    pub(super) fn shadow(
        &mut self,
        file: &Parsed<RoutesFile>,
        key: &str,
        s: &raw::Shadow,
        handler: Option<&raw::Route>,
        known: &Known<'_>,
    ) -> Option<Shadow> {
        let key = format!("{key}.shadow");
        let before = self.errors.len();
        if let Some(r) = handler
            && r.proxy.is_none()
            && r.split.is_none()
        {
            self.errors
                .push(file.diag(&key, "`shadow` goes beside `proxy` or `split`"));
        }
        let backend = self.backend_ref(file, &format!("{key}.backend"), &s.backend, known);
        let methods = match &s.methods {
            None => vec![Method::GET, Method::HEAD, Method::OPTIONS],
            Some(ms) => {
                let mut out = Vec::new();
                for (i, m) in ms.iter().enumerate() {
                    match Method::from_bytes(m.as_bytes()) {
                        Ok(method) if m.to_ascii_uppercase() == *m => out.push(method),
                        _ => self.errors.push(file.diag(
                            format!("{key}.methods[{i}]"),
                            format!("`{m}` is not a method (write methods in capitals)"),
                        )),
                    }
                }
                out
            }
        };
        let compare = match &s.compare {
            None | Some(Compare::Enabled(false)) => None,
            Some(Compare::Enabled(true)) => Some(Vec::new()),
            Some(Compare::Ignoring(c)) => {
                for (i, p) in c.ignore.iter().enumerate() {
                    if !p.is_empty() && !p.starts_with('/') {
                        self.errors.push(file.diag(
                            format!("{key}.compare.ignore[{i}]"),
                            format!("`{p}` is not a JSON pointer (they start with /)"),
                        ));
                    }
                }
                Some(c.ignore.clone())
            }
        };
        if s.max_in_flight == 0 {
            self.errors
                .push(file.diag(format!("{key}.max_in_flight"), "must be at least 1"));
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Shadow {
            backend: backend?,
            share: s.percent.fraction(),
            methods,
            compare,
            max_in_flight: s.max_in_flight as usize,
            max_body: usize::try_from(s.max_body.0).unwrap_or(usize::MAX),
        })
    }
}
