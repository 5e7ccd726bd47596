package main

import "context"

func sandbox(ctx context.Context, b *bench) ([]*figure, error) { return nil, nil }
