"""What processes recording at the same time share: key locks and single flight, pacing, the budget."""
