package fakeinfisical

// IssueToken hands out an access token for identityID without a login, as an operator does when they create a
// token in Infisical's UI for the static-token method. It follows the TTL knobs like a login's token, so
// ExpireTokens and RevokeTokens reach it too. The identity must exist (AddIdentity, AddMethodIdentity) for the token
// to read anything.
func (s *Server) IssueToken(identityID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.identities[identityID] == nil {
		s.reportf("fakeinfisical: IssueToken for unknown identity %q", identityID)
	}
	token, _ := s.issueLocked(identityID, s.now())["accessToken"].(string)
	return token
}
