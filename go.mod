module github.com/execd/execd

go 1.26.8
