"""The audit trail: records hash-chained and checkpointed, the stores, the writer, reports."""
