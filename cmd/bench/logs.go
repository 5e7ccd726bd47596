package main

import "context"

func logs(ctx context.Context, b *bench) ([]*figure, error) { return nil, nil }
