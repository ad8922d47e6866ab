//! Lays the tables of a workspace over each other: the workspace's first, then each selected package's.
//! Run-wide keys (one cluster per run) must agree between packages; a package's template keys override the
//! workspace's for that package alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Setter;
use super::manifest::{Sourced, Table};
use super::{
    ConfigError, DatabaseSpec, Isolation, Overrides, PostgresChoice, Setting, SpecOrigins,
};

const DEFAULT_DATABASE_ENV: &str = "DATABASE_URL";
const DEFAULT_SLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// A run-wide value and who set it.
#[derive(Debug, Clone)]
struct Layer<T> {
    value: T,
    setter: Setter,
}

/// The run-wide keys laid so far.
#[derive(Debug, Default)]
pub(crate) struct RunKeys {
    postgres: Option<Layer<PostgresChoice>>,
    tmpfs: Option<Layer<bool>>,
    isolation: Option<Layer<Isolation>>,
    database_env: Option<Layer<String>>,
    timeout: Option<Layer<Duration>>,
    slow_timeout: Option<Layer<Duration>>,
    server: Option<Layer<String>>,
    retries: Option<Layer<u32>>,
    reuse: Option<Layer<bool>>,
    group_read_only: Option<Layer<bool>>,
    html: Option<Layer<PathBuf>>,
    /// Setting name → its value.
    settings: BTreeMap<String, Layer<String>>,
}

impl RunKeys {
    /// Lays a table's run-wide keys over these: the workspace's (`package` is `None`) may be overridden,
    /// but two packages that set a key to different values are refused.
    pub(crate) fn lay(&mut self, table: &Table, package: Option<&str>) -> Result<(), ConfigError> {
        lay("postgres", &mut self.postgres, &table.postgres, package)?;
        lay("tmpfs", &mut self.tmpfs, &table.tmpfs, package)?;
        lay("server", &mut self.server, &table.server, package)?;
        lay("isolation", &mut self.isolation, &table.isolation, package)?;
        lay(
            "database_env",
            &mut self.database_env,
            &table.database_env,
            package,
        )?;
        lay("timeout", &mut self.timeout, &table.timeout, package)?;
        lay(
            "slow_timeout",
            &mut self.slow_timeout,
            &table.slow_timeout,
            package,
        )?;
        lay("retries", &mut self.retries, &table.retries, package)?;
        lay("reuse", &mut self.reuse, &table.reuse, package)?;
        lay(
            "group_read_only",
            &mut self.group_read_only,
            &table.group_read_only,
            package,
        )?;
        lay("html", &mut self.html, &table.html, package)?;
        for (name, setting) in &table.settings {
            let written = Some(Sourced {
                value: setting.value.clone(),
                origin: setting.origin.clone(),
            });
            let mut run = self.settings.get(name).cloned();
            lay(&format!("settings.{name}"), &mut run, &written, package)?;
            if let Some(layer) = run {
                self.settings.insert(name.clone(), layer);
            }
        }
        Ok(())
    }

    pub(crate) fn postgres(&self) -> (PostgresChoice, Option<super::Origin>) {
        match &self.postgres {
            Some(layer) => (layer.value.clone(), Some(layer.setter.origin.clone())),
            None => (PostgresChoice::Newest, None),
        }
    }

    pub(crate) fn server(&self) -> Option<String> {
        self.server.as_ref().map(|layer| layer.value.clone())
    }

    pub(crate) fn tmpfs(&self, overrides: &Overrides) -> bool {
        !overrides.no_tmpfs && self.tmpfs.as_ref().is_none_or(|layer| layer.value)
    }

    pub(crate) fn isolation(&self, overrides: &Overrides) -> Isolation {
        overrides
            .isolation
            .or(self.isolation.as_ref().map(|layer| layer.value))
            .unwrap_or(Isolation::Test)
    }

    pub(crate) fn database_env(&self) -> String {
        self.database_env.as_ref().map_or_else(
            || DEFAULT_DATABASE_ENV.to_owned(),
            |layer| layer.value.clone(),
        )
    }

    pub(crate) fn settings(&self) -> Vec<Setting> {
        self.settings
            .iter()
            .map(|(name, layer)| Setting {
                name: name.clone(),
                value: layer.value.clone(),
                origin: layer.setter.origin.clone(),
            })
            .collect()
    }

    pub(crate) fn timeout(&self, overrides: &Overrides) -> Option<Duration> {
        overrides
            .timeout
            .or(self.timeout.as_ref().map(|layer| layer.value))
    }

    /// `--retries` over the `retries` key; none by default.
    pub(crate) fn retries(&self, overrides: &Overrides) -> usize {
        overrides
            .retries
            .or(self.retries.as_ref().map(|layer| layer.value as usize))
            .unwrap_or(0)
    }

    /// The `reuse` key; on by default.
    pub(crate) fn reuse(&self) -> bool {
        self.reuse.as_ref().is_none_or(|layer| layer.value)
    }

    /// The `group_read_only` key; on by default (it needs `reuse`'s check).
    pub(crate) fn group_read_only(&self) -> bool {
        self.group_read_only
            .as_ref()
            .is_none_or(|layer| layer.value)
    }

    /// The `html` key: where every run writes its HTML report; none by default.
    pub(crate) fn html(&self) -> Option<PathBuf> {
        self.html.as_ref().map(|layer| layer.value.clone())
    }

    pub(crate) fn slow_timeout(&self) -> Duration {
        self.slow_timeout
            .as_ref()
            .map_or(DEFAULT_SLOW_TIMEOUT, |layer| layer.value)
    }
}

/// Lays one key: refuses a package's value that differs from another package's.
fn lay<T: Clone + PartialEq>(
    key: &str,
    run: &mut Option<Layer<T>>,
    written: &Option<Sourced<T>>,
    package: Option<&str>,
) -> Result<(), ConfigError> {
    let Some(written) = written else {
        return Ok(());
    };
    let setter = Setter {
        package: package.map(str::to_owned),
        origin: written.origin.clone(),
    };
    if let Some(laid) = run {
        if laid.setter.package.is_some() && package.is_some() && laid.value != written.value {
            return Err(ConfigError::Conflict {
                key: key.to_owned(),
                first: Box::new(laid.setter.clone()),
                second: Box::new(setter),
            });
        }
    }
    *run = Some(Layer {
        value: written.value.clone(),
        setter,
    });
    Ok(())
}

/// The template a package needs: its own keys, else the workspace's, else the conventional `migrations`
/// directory when it exists (as sqlx's `migrate!()` does).
pub(crate) fn database_spec(package: &Table, workspace: &Table, manifest: &Path) -> DatabaseSpec {
    let migrations = package
        .migrations
        .as_ref()
        .or(workspace.migrations.as_ref());
    let fixtures = package.fixtures.as_ref().or(workspace.fixtures.as_ref());
    let extensions = package
        .extensions
        .as_ref()
        .or(workspace.extensions.as_ref());
    let conventional = manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join("migrations");
    DatabaseSpec {
        migrations: match migrations {
            Some(dir) => Some(dir.value.clone()),
            None => conventional.is_dir().then_some(conventional),
        },
        fixtures: fixtures.map(|f| f.value.clone()).unwrap_or_default(),
        extensions: extensions.map(|e| e.value.clone()).unwrap_or_default(),
        origins: SpecOrigins {
            migrations: migrations.map(|dir| dir.origin.clone()),
            fixtures: fixtures.map(|files| files.origin.clone()),
        },
    }
}
