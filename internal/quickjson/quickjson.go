// Package quickjson is the JSON scanners of package wire under their
// former names, for the callers not yet moved to wire.
package quickjson

import "github.com/taskrunner/taskrunner/internal/wire"

// SkipSpace is wire.SkipSpace.
func SkipSpace(b []byte) []byte { return wire.SkipSpace(b) }

// PlainString is wire.PlainString.
func PlainString(b []byte) (content, rest []byte, ok bool) { return wire.PlainString(b) }

// ObjectLength is wire.ObjectLength.
func ObjectLength(b []byte) int { return wire.ObjectLength(b) }

// NumberLength is wire.NumberLength.
func NumberLength(b []byte) int { return wire.NumberLength(b) }

// ObjectKey is wire.ObjectKey.
func ObjectKey(b []byte, key string) (rest []byte, ok bool) { return wire.ObjectKey(b, key) }

// AppendPlainString is wire.AppendPlainString.
func AppendPlainString(b []byte, s string) (_ []byte, ok bool) { return wire.AppendPlainString(b, s) }
