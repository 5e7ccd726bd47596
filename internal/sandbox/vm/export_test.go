package vm

// Monitors lists the machines' monitor processes: pid and label.
func Monitors() map[int]string {
	m := map[int]string{}
	for _, p := range monitorProcesses() {
		m[p.pid] = p.name
	}
	return m
}

// LabelPrefix starts the label of a machine's monitor process.
const LabelPrefix = labelPrefix
