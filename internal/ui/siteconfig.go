package ui

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/execd/execd/internal/siteconfig"
)

// The site config page never sends a secret to the browser. It shows the
// file's text with every secret replaced by a mask: values of keys that
// name a token, secret, password or credential become "********", and the
// password of a URL with credentials becomes "********" too. The edit form
// holds the same masked text. On save, a value still equal to the mask of
// the value in force at the same place is put back (unmaskConfig), so an
// unchanged secret stays as it was and a typed one is taken as it is; then
// siteconfig.Watcher.Save validates the text and writes it atomically.

// mask is what a hidden secret looks like.
const mask = "********"

var secretKeyRE = regexp.MustCompile(`(?i)(token|secret|password|passwd|credential|apikey|api_key|privatekey|private_key)`)

type siteConfigData struct {
	Path      string
	Masked    string // the file's text, secrets masked: shown and edited
	Draft     string // the text of a refused save, to correct
	Config    *siteconfig.Config
	Saved     bool
	Threshold string
	Rows      int // of the edit box: the text's lines and some room
}

func (s *Server) handleSiteConfig(w http.ResponseWriter, r *http.Request, sess *session) {
	s.renderSiteConfig(w, r, sess, http.StatusOK, "", "")
}

func (s *Server) renderSiteConfig(w http.ResponseWriter, r *http.Request, sess *session, code int, draft, errMsg string) {
	cfg := s.config.Current()
	masked, err := maskConfig(s.config.Raw())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := siteConfigData{
		Path:      s.config.Path(),
		Masked:    string(masked),
		Draft:     draft,
		Config:    cfg,
		Saved:     r.URL.Query().Get("saved") == "1" && errMsg == "",
		Threshold: cfg.Active().String(),
	}
	if data.Draft == "" {
		data.Draft = data.Masked
	}
	data.Rows = min(max(strings.Count(data.Draft, "\n")+3, 10), 40)
	p := page{Title: "Site config", Nav: "site-config", CSRF: sess.csrf, Error: errMsg, Data: data}
	if data.Saved {
		p.Flash = "Saved. The new site config is in force."
	}
	s.render(w, r, code, "site-config.html", p)
}

func (s *Server) handleSaveSiteConfig(w http.ResponseWriter, r *http.Request, sess *session) {
	submitted := strings.ReplaceAll(r.PostForm.Get("config"), "\r\n", "\n")
	text := unmaskConfig([]byte(submitted), s.config.Raw())
	if err := s.config.Save(text); err != nil {
		s.logger.Warn("ui: site config edit refused", "err", err)
		s.renderSiteConfig(w, r, sess, http.StatusUnprocessableEntity, submitted, err.Error())
		return
	}
	s.logger.Info("ui: site config saved")
	http.Redirect(w, r, "/ui/site-config?saved=1", http.StatusSeeOther)
}

// maskConfig returns the config text with its secrets masked, comments
// and layout kept.
func maskConfig(raw []byte) ([]byte, error) {
	v, err := hujson.Parse(raw)
	if err != nil {
		return nil, err
	}
	walkStrings(&v, "", func(key string, lit *hujson.Value) {
		if m, ok := maskValue(key, lit.Value.(hujson.Literal).String()); ok {
			lit.Value = hujson.String(m)
		}
	})
	return v.Pack(), nil
}

// unmaskConfig puts back, in the submitted text, the secrets in force that
// it still shows masked at the same place. Text that does not parse is
// returned as it is, for Save to report the syntax error.
func unmaskConfig(submitted, current []byte) []byte {
	v, err := hujson.Parse(submitted)
	if err != nil {
		return submitted
	}
	cur, err := hujson.Parse(current)
	if err != nil {
		return submitted
	}
	secrets := map[string]string{} // path -> value in force, for masked values
	walkStrings(&cur, "", func(path string, lit *hujson.Value) {
		s := lit.Value.(hujson.Literal).String()
		if m, ok := maskValue(path, s); ok {
			secrets[path+"\x00"+m] = s
		}
	})
	walkStrings(&v, "", func(path string, lit *hujson.Value) {
		if orig, ok := secrets[path+"\x00"+lit.Value.(hujson.Literal).String()]; ok {
			lit.Value = hujson.String(orig)
		}
	})
	return v.Pack()
}

// walkStrings calls f on every string value under v with its path:
// object keys and array indices joined by "/".
func walkStrings(v *hujson.Value, path string, f func(path string, lit *hujson.Value)) {
	switch t := v.Value.(type) {
	case *hujson.Object:
		for i := range t.Members {
			m := &t.Members[i]
			name, _ := m.Name.Value.(hujson.Literal)
			walkStrings(&m.Value, path+"/"+name.String(), f)
		}
	case *hujson.Array:
		for i := range t.Elements {
			walkStrings(&t.Elements[i], path+"/"+strconv.Itoa(i), f)
		}
	case hujson.Literal:
		if t.Kind() == '"' {
			f(path, v)
		}
	}
}

// maskValue returns the masked form of the string s found at path, and
// whether it hides anything.
func maskValue(path, s string) (string, bool) {
	key := path[strings.LastIndexByte(path, '/')+1:]
	if secretKeyRE.MatchString(key) && s != "" {
		return mask, s != mask
	}
	if u, err := url.Parse(s); err == nil && u.User != nil && strings.Contains(s, "@") {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), mask)
			m := strings.Replace(u.String(), url.QueryEscape(mask), mask, 1)
			return m, m != s
		}
	}
	return s, false
}
