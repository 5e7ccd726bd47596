package main

import "context"

func scale(ctx context.Context, b *bench) ([]*figure, error) { return nil, nil }
