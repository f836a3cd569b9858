package infisical

import (
	"fmt"
	"strings"
)

// Field is a part of a Client's configuration that an error or a hint may ask its user to fix. String names it as
// this package's API does (Config.BaseURL); Config.Names lets a caller name it in its own users' terms, such as the
// setting that sets it.
type Field int

// The fields errors and hints name.
const (
	FieldBaseURL Field = iota + 1
	FieldCACert
	FieldMethod
	FieldClientID
	FieldClientSecret
	FieldIdentityID
	FieldGCPKeyFile
	FieldOIDCToken // the token, or a file holding it
	FieldJWT
	FieldAccessToken
)

func (f Field) String() string {
	switch f {
	case FieldBaseURL:
		return "Config.BaseURL"
	case FieldCACert:
		return "Config.CACert"
	case FieldMethod:
		return "Credentials.Method"
	case FieldClientID:
		return "Credentials.ClientID"
	case FieldClientSecret:
		return "Credentials.ClientSecret"
	case FieldIdentityID:
		return "Credentials.IdentityID"
	case FieldGCPKeyFile:
		return "Credentials.GCPKeyFile"
	case FieldOIDCToken:
		return "Credentials.OIDCToken or Credentials.OIDCTokenPath"
	case FieldJWT:
		return "Credentials.JWT"
	case FieldAccessToken:
		return "Credentials.AccessToken"
	}
	return fmt.Sprintf("Field(%d)", int(f))
}

// namer names Fields in the terms of whoever configured the Client (Config.Names), else in this package's own.
type namer func(Field) string

func (n namer) of(f Field) string {
	if n != nil {
		if name := n(f); name != "" {
			return name
		}
	}
	return f.String()
}

// list names fields joined with "and".
func (n namer) list(fields []Field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = n.of(f)
	}
	return strings.Join(names, " and ")
}

// notInfisical is the hint for an answer that cannot have come from Infisical's API.
func (n namer) notInfisical() string {
	return "(is " + n.of(FieldBaseURL) + " the Infisical site?)"
}
