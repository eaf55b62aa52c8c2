"""QUP publishing: trace datasets and adapters as Hub repos with generated cards."""
