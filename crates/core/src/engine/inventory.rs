//! Stock keeping units: the cost history a store, an inventory system or an
//! ERP reports for each SKU, and the unit costs order lines take from it.

use super::*;

impl Engine {
    /// Folds what a system says about one SKU.
    pub(super) fn apply_inventory(
        &mut self,
        _src: &dyn Source,
        _env: &Envelope,
        _i: &InventoryUpdated,
    ) -> Result<Outcome, FoldError> {
        Ok(Outcome::Duplicate)
    }
}
