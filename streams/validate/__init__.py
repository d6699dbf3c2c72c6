"""The validating stream job: every raw CDR judged once, routed to cdr.valid or cdr.dlq."""
