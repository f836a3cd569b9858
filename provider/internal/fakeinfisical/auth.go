package fakeinfisical

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

type identity struct {
	id       string
	method   string
	secret   string // Universal Auth client secret
	jwt      string // the JWT a JWT-style method must present ("" = any non-empty)
	projects map[string]bool

	failures    []time.Time
	lockedUntil time.Time
}

type token struct {
	identity  string
	expiresAt time.Time // zero = never
	maxAt     time.Time // zero = never
	revoked   bool
}

// AddIdentity registers a Universal Auth identity (its identity id is clientID) allowed to read the given projects
// (by id or slug).
func (s *Server) AddIdentity(clientID, clientSecret string, projects ...string) {
	s.addIdentity(&identity{id: clientID, method: MethodUniversalAuth, secret: clientSecret}, projects)
}

// AddMethodIdentity registers an identity that logs in with method (MethodKubernetes, MethodOIDC, MethodJWT,
// MethodAzure, MethodGCP: body {identityId, jwt}, where jwt must equal the given one; MethodAWS: a signed STS
// GetCallerIdentity request, jwt unused).
func (s *Server) AddMethodIdentity(method, identityID, jwt string, projects ...string) {
	s.addIdentity(&identity{id: identityID, method: method, jwt: jwt}, projects)
}

func (s *Server) addIdentity(id *identity, projects []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id.projects = map[string]bool{}
	s.identities[id.id] = id
	for _, p := range projects {
		id.projects[s.projectLocked(p).id] = true
	}
}

// Grant lets identityID read project (by id or slug).
func (s *Server) Grant(identityID, project string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := s.identities[identityID]; id != nil {
		id.projects[s.projectLocked(project).id] = true
	}
}

// SetTokenTTL changes the TTL and max TTL of tokens handed out from now on (0 = never expires).
func (s *Server) SetTokenTTL(ttl, maxTTL time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl, s.maxTTL = ttl, maxTTL
}

// ExpireTokens makes every token handed out so far expired: the next request with one gets 403 TokenError.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := s.now().Add(-time.Second)
	for _, t := range s.tokens {
		t.expiresAt = past
	}
}

// RevokeTokens revokes every token handed out so far: the next request with one gets 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.revoked = true
	}
}

// Locked reports whether identityID is currently locked out of Universal Auth.
func (s *Server) Locked(identityID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.identities[identityID]
	return id != nil && s.now().Before(id.lockedUntil)
}

func (s *Server) login(c *call, method string) {
	body, ok := c.decodeBody()
	if !ok {
		return
	}
	var required []string
	switch method {
	case MethodUniversalAuth:
		required = []string{"clientId", "clientSecret"}
	case MethodAWS:
		required = []string{"identityId", "iamHttpRequestMethod", "iamRequestBody", "iamRequestHeaders"}
	default:
		required = []string{"identityId", "jwt"}
	}
	if issues := requireStrings(body, required); len(issues) > 0 {
		c.fail(http.StatusUnprocessableEntity, "ValidationFailure", issues)
		return
	}
	idKey := "identityId"
	if method == MethodUniversalAuth {
		idKey = "clientId"
	}
	idName := body[idKey].(string)
	c.identity = idName

	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.identities[idName]
	if id == nil || id.method != method {
		c.fail(http.StatusUnauthorized, "UnauthorizedError", MsgInvalidCredentials)
		return
	}
	now := s.now()
	if method == MethodUniversalAuth {
		if now.Before(id.lockedUntil) {
			c.fail(http.StatusUnauthorized, "UnauthorizedError", MsgLocked)
			return
		}
		if body["clientSecret"] != id.secret {
			s.recordFailure(id, now)
			c.fail(http.StatusUnauthorized, "UnauthorizedError", MsgInvalidCredentials)
			return
		}
		id.failures = nil
	} else if msg := checkMethodProof(method, id, body); msg != "" {
		c.fail(http.StatusUnauthorized, "UnauthorizedError", msg)
		return
	}
	c.json(http.StatusOK, s.issueLocked(id.id, now))
}

func (s *Server) recordFailure(id *identity, now time.Time) {
	if s.lockThreshold <= 0 {
		return
	}
	kept := id.failures[:0]
	for _, t := range id.failures {
		if now.Sub(t) < s.lockWindow {
			kept = append(kept, t)
		}
	}
	id.failures = append(kept, now)
	if len(id.failures) >= s.lockThreshold {
		id.lockedUntil = now.Add(s.lockDuration)
		id.failures = nil
	}
}

// checkMethodProof returns why the proof in body does not log id in, or "".
func checkMethodProof(method string, id *identity, body map[string]any) string {
	if method != MethodAWS {
		if id.jwt != "" && body["jwt"] != id.jwt {
			return "Access denied: the JWT does not match the identity's configuration"
		}
		return ""
	}
	if body["iamHttpRequestMethod"] != http.MethodPost {
		return "Access denied: iamHttpRequestMethod must be POST"
	}
	reqBody, err := base64.StdEncoding.DecodeString(body["iamRequestBody"].(string))
	if err != nil || string(reqBody) != "Action=GetCallerIdentity&Version=2011-06-15" {
		return "Access denied: iamRequestBody is not a base64 GetCallerIdentity request"
	}
	rawHeaders, err := base64.StdEncoding.DecodeString(body["iamRequestHeaders"].(string))
	var headers map[string]string
	if err != nil || json.Unmarshal(rawHeaders, &headers) != nil {
		return "Access denied: iamRequestHeaders is not base64 JSON"
	}
	if !strings.HasPrefix(headers["Authorization"], "AWS4-HMAC-SHA256 ") || headers["X-Amz-Date"] == "" ||
		!strings.HasPrefix(headers["Host"], "sts.") || !strings.HasSuffix(headers["Host"], ".amazonaws.com") {
		return "Access denied: iamRequestHeaders lack a SigV4 signature for sts.<region>.amazonaws.com"
	}
	return ""
}

// issueLocked makes a token for identityID with the current TTL knobs, in the login response shape.
func (s *Server) issueLocked(identityID string, now time.Time) map[string]any {
	t := &token{identity: identityID}
	if s.ttl > 0 {
		t.expiresAt = now.Add(s.ttl)
	}
	if s.maxTTL > 0 {
		t.maxAt = now.Add(s.maxTTL)
	}
	value := "fk." + base64.RawURLEncoding.EncodeToString([]byte(`{"identityId":"`+identityID+`"}`)) + "." + randomHex(16)
	s.tokens[value] = t
	return map[string]any{
		"accessToken":       value,
		"expiresIn":         int64(s.ttl / time.Second),
		"accessTokenMaxTTL": int64(s.maxTTL / time.Second),
		"tokenType":         "Bearer",
	}
}

func (s *Server) renew(c *call) {
	body, ok := c.decodeBody()
	if !ok {
		return
	}
	if issues := requireStrings(body, []string{"accessToken"}); len(issues) > 0 {
		c.fail(http.StatusUnprocessableEntity, "ValidationFailure", issues)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	old, found := s.tokens[body["accessToken"].(string)]
	switch {
	case !found:
		c.fail(http.StatusForbidden, "TokenError", "invalid signature")
		return
	case old.revoked:
		c.fail(http.StatusUnauthorized, "UnauthorizedError", "No identity access token found")
		return
	case !old.expiresAt.IsZero() && now.After(old.expiresAt):
		c.fail(http.StatusForbidden, "TokenError", MsgTokenExpired)
		return
	case !old.maxAt.IsZero() && now.Add(s.ttl).After(old.maxAt):
		c.fail(http.StatusUnauthorized, "UnauthorizedError", "Failed to renew MI access token past its Max TTL expiration")
		return
	}
	c.identity = old.identity
	resp := s.issueLocked(old.identity, now)
	s.tokens[resp["accessToken"].(string)].maxAt = old.maxAt
	c.json(http.StatusOK, resp)
}

func (s *Server) revoke(c *call) {
	body, ok := c.decodeBody()
	if !ok {
		return
	}
	if issues := requireStrings(body, []string{"accessToken"}); len(issues) > 0 {
		c.fail(http.StatusUnprocessableEntity, "ValidationFailure", issues)
		return
	}
	s.mu.Lock()
	if t := s.tokens[body["accessToken"].(string)]; t != nil {
		t.revoked = true
		c.identity = t.identity
	}
	s.mu.Unlock()
	c.json(http.StatusOK, map[string]any{"message": "Successfully revoked access token"})
}

// authenticate resolves the bearer token to an identity, or answers the error the real server gives.
func (s *Server) authenticate(c *call) (*identity, bool) {
	h := c.r.Header.Get("Authorization")
	if h == "" {
		c.fail(http.StatusUnauthorized, "UnauthorizedError", MsgTokenMissing)
		return nil, false
	}
	// Like the real server: everything after the first 7 characters ("Bearer ") is the token.
	value := ""
	if len(h) > 7 {
		value = h[7:]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[value]
	switch {
	case t == nil:
		c.fail(http.StatusForbidden, "TokenError", "invalid signature")
		return nil, false
	case !t.expiresAt.IsZero() && s.now().After(t.expiresAt):
		c.identity = t.identity
		c.fail(http.StatusForbidden, "TokenError", MsgTokenExpired)
		return nil, false
	case t.revoked:
		c.identity = t.identity
		c.fail(http.StatusUnauthorized, "UnauthorizedError", "No identity access token found")
		return nil, false
	}
	c.identity = t.identity
	id := s.identities[t.identity]
	if id == nil {
		c.fail(http.StatusUnauthorized, "UnauthorizedError", "No identity access token found")
		return nil, false
	}
	return id, true
}

// decodeBody reads a JSON object body; Fastify answers a bad body with 400.
func (c *call) decodeBody() (map[string]any, bool) {
	var body map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, 1<<20)).Decode(&body); err != nil || body == nil {
		c.fail(http.StatusBadRequest, "BadRequest", "Body must be a JSON object")
		return nil, false
	}
	return body, true
}

// requireStrings returns zod-style issues for keys that are missing or not non-empty strings.
func requireStrings(body map[string]any, keys []string) []map[string]any {
	var issues []map[string]any
	for _, k := range keys {
		v, present := body[k]
		str, isString := v.(string)
		switch {
		case !present:
			issues = append(issues, map[string]any{"code": "invalid_type", "expected": "string", "received": "undefined", "path": []string{k}, "message": "Required"})
		case !isString:
			issues = append(issues, map[string]any{"code": "invalid_type", "expected": "string", "path": []string{k}, "message": "Expected string"})
		case strings.TrimSpace(str) == "":
			issues = append(issues, map[string]any{"code": "too_small", "minimum": 1, "type": "string", "path": []string{k}, "message": "String must contain at least 1 character(s)"})
		}
	}
	return issues
}
