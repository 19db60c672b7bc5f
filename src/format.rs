//! TEMPORARY placeholder while the format module is written.
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightFormat {
    #[default]
    Dense,
}
impl WeightFormat {
    pub fn is_dense(&self) -> bool {
        matches!(self, WeightFormat::Dense)
    }
    pub fn label(&self) -> String {
        "dense".into()
    }
    pub fn part_names(&self, name: &str) -> Vec<String> {
        vec![name.to_string()]
    }
    pub fn validate(
        &self,
        _name: &str,
        _shape: &[usize],
        _parts: &std::collections::BTreeMap<String, crate::Tensor>,
    ) -> crate::Result<()> {
        Ok(())
    }
    pub fn decode(
        &self,
        name: &str,
        _shape: &[usize],
        parts: &std::collections::BTreeMap<String, crate::Tensor>,
    ) -> crate::Result<crate::Tensor> {
        Ok(parts[name].to_f32())
    }
    pub fn encode(
        &self,
        name: &str,
        w: &crate::Tensor,
    ) -> crate::Result<std::collections::BTreeMap<String, crate::Tensor>> {
        Ok([(name.to_string(), w.clone())].into())
    }
    pub fn stored_bytes(
        &self,
        name: &str,
        parts: &std::collections::BTreeMap<String, crate::Tensor>,
    ) -> usize {
        parts.get(name).map(|t| t.bytes().len()).unwrap_or(0)
    }
}
