package ui

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/execd/execd/internal/store"
)

const (
	// recentJobsLimit is how many of a queue's newest jobs the throughput
	// and duration charts look at (see history.go).
	recentJobsLimit = 2000
	// bucket is the width of a throughput or duration bar.
	bucket = 5 * time.Minute
)

// stateCount is the number of jobs of a queue in one state.
type stateCount struct {
	State string
	Count int
}

type queueView struct {
	Name         string
	Configured   bool
	Counts       []stateCount
	Size         int // queued + processing
	Total        int
	Finished     int // in the last hour
	Unsuccessful int
	Median       string // duration of the jobs finished in the last hour
	SizeChart    chart
	Throughput   chart
	Duration     chart
}

type queuesData struct {
	Queues  []queueView
	AnyJobs bool
	Sample  time.Duration
}

func (s *Server) handleQueues(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	cfg := s.config.Current()
	counts, err := s.store.CountByState(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	names := slices.Clone(cfg.Queues)
	byQueue := map[string]map[string]int{}
	for _, c := range counts {
		if byQueue[c.Queue] == nil {
			byQueue[c.Queue] = map[string]int{}
			if !slices.Contains(names, c.Queue) {
				names = append(names, c.Queue)
			}
		}
		byQueue[c.Queue][c.State] += c.Count
	}
	now := s.now()
	from := now.Add(-time.Hour)
	samples := s.history.since(from)
	data := queuesData{Sample: s.sample}
	for _, name := range names {
		v := queueView{Name: name, Configured: cfg.HasQueue(name)}
		for _, st := range store.States {
			n := byQueue[name][st]
			v.Counts = append(v.Counts, stateCount{st, n})
			v.Total += n
		}
		v.Size = byQueue[name][store.StateQueued] + byQueue[name][store.StateProcessing]
		if v.Total > 0 {
			data.AnyJobs = true
		}
		size := series{Name: "queued + processing", Color: "#2f6fde"}
		for _, smp := range samples {
			size.points = append(size.points, point{smp.at, float64(smp.size[name])})
		}
		size.points = append(size.points, point{now, float64(v.Size)})
		v.SizeChart = lineChart("queue size of "+name+" over the last hour", from, now, countLabel, size)
		if v.Total > 0 {
			if err := s.finishedCharts(ctx, &v, now); err != nil {
				s.fail(w, r, err)
				return
			}
		} else {
			from, to := barRange(now)
			v.Throughput = barChart("jobs finished", from, to, bucket, countLabel, nil, nil)
			v.Duration = barChart("job durations", from, to, bucket, secondsLabel, nil, nil)
		}
		data.Queues = append(data.Queues, v)
	}
	s.render(w, r, http.StatusOK, "queues.html", page{Title: "Queues", Nav: "queues", CSRF: sess.csrf, Data: data})
}

// barRange is the span of the bar charts: the five-minute buckets from
// the one an hour ago to the current one.
func barRange(now time.Time) (from, to time.Time) {
	return now.Add(-time.Hour).Truncate(bucket), now.Truncate(bucket).Add(bucket)
}

// finishedCharts draws the throughput and duration charts of v from its
// newest jobs that finished in the last hour.
func (s *Server) finishedCharts(ctx context.Context, v *queueView, now time.Time) error {
	jobs, err := s.store.ListJobs(ctx, v.Name, store.ListOptions{Limit: recentJobsLimit})
	if err != nil {
		return fmt.Errorf("recent jobs of %q: %w", v.Name, err)
	}
	from, to := barRange(now)
	hourAgo := now.Add(-time.Hour)
	type agg struct {
		ok, bad, canceled int
		sum, max          float64
		n                 int
	}
	buckets := map[time.Time]*agg{}
	var durations []float64
	for _, j := range jobs {
		if j.FinishedAt == nil || j.FinishedAt.Before(hourAgo) || j.FinishedAt.After(now) {
			continue
		}
		at := j.FinishedAt.Truncate(bucket)
		a := buckets[at]
		if a == nil {
			a = &agg{}
			buckets[at] = a
		}
		v.Finished++
		switch j.State {
		case store.StateCompleted:
			a.ok++
		case store.StateCanceled:
			a.canceled++
			v.Unsuccessful++
		default:
			a.bad++
			v.Unsuccessful++
		}
		if j.StartedAt != nil {
			d := j.FinishedAt.Sub(*j.StartedAt).Seconds()
			a.sum += d
			a.n++
			a.max = max(a.max, d)
			durations = append(durations, d)
		}
	}
	keys := make([]time.Time, 0, len(buckets))
	for at := range buckets {
		keys = append(keys, at)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Before(keys[j]) })
	ok := series{Name: "completed", Color: "#1f9d55"}
	bad := series{Name: "failed or errored", Color: "#d64545"}
	canceled := series{Name: "canceled", Color: "#9aa3ad"}
	avg := series{Name: "average", Color: "#2f6fde"}
	longest := series{Name: "longest", Color: "#e08a00"}
	for _, at := range keys {
		a := buckets[at]
		ok.points = append(ok.points, point{at, float64(a.ok)})
		bad.points = append(bad.points, point{at, float64(a.bad)})
		canceled.points = append(canceled.points, point{at, float64(a.canceled)})
		if a.n > 0 {
			avg.points = append(avg.points, point{at, a.sum / float64(a.n)})
			longest.points = append(longest.points, point{at, a.max})
		}
	}
	v.Throughput = barChart("jobs finished per 5 minutes in "+v.Name, from, to, bucket, countLabel, []series{ok, bad, canceled}, nil)
	v.Duration = barChart("job durations per 5 minutes in "+v.Name, from, to, bucket, secondsLabel, []series{avg}, &longest)
	if len(durations) > 0 {
		sort.Float64s(durations)
		v.Median = roundDuration(time.Duration(durations[len(durations)/2] * float64(time.Second)))
	}
	return nil
}
