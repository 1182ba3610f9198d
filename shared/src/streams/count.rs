//! `count()`: the number of records per key, in a RocksDB store, optionally emitted on every
//! update. The smallest useful stateful processor, used by the tests and `casestudies bench`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::{Processor, ProcessorContext};
use crate::consumer::HandlerError;

/// The count emitted for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
}

/// Counts records per key (any JSON value) into `store`; emits a [`KeyCount`] to `output`.
pub struct CountByKey {
    pub store: &'static str,
    pub output: Option<String>,
}

impl Processor for CountByKey {
    // Any JSON: decoded for validity (bad records go to the DLQ), never allocated.
    type Input = IgnoredAny;

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        key: Option<&str>,
        _value: IgnoredAny,
    ) -> Result<(), HandlerError> {
        let key = key.ok_or_else(|| HandlerError::Permanent("record has no key".into()))?;
        let count = ctx
            .get::<u64>(self.store, key.as_bytes())
            .map_err(HandlerError::Transient)?
            .unwrap_or(0)
            + 1;
        ctx.put(self.store, key.as_bytes(), &count)
            .map_err(HandlerError::Transient)?;
        if let Some(output) = &self.output {
            let update = KeyCount {
                key: key.to_owned(),
                count,
            };
            ctx.emit(output, key, &update)
                .map_err(HandlerError::Transient)?;
        }
        Ok(())
    }
}
