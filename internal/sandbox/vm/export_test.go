package vm

// LabelPrefix starts the label of a machine's monitor process.
const LabelPrefix = labelPrefix
