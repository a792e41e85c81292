//! Placeholder: filled by the scaffold work item.
