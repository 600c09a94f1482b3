package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Code string `json:"code"`
	N    int8   `json:"n"`
}

type embedded struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// sample holds a member of each kind the Encoder writes.
type sample struct {
	embedded
	Flag     bool            `json:"flag"`
	Raw      json.RawMessage `json:"raw"`
	Count    int             `json:"count"`
	At       time.Time       `json:"at"`
	Small    int16           `json:"small"`
	F        float64         `json:"f"`
	Mid      int32           `json:"mid"`
	PF       *float64        `json:"pf"`
	PS       *string         `json:"ps"`
	PT       *time.Time      `json:"pt"`
	PI       *int            `json:"pi"`
	Inner    *inner          `json:"inner"`
	Plain    inner           `json:"plain"`
	Untagged string
	Skipped  string `json:"-"`
	hidden   string
}

// decodeSample holds a member of each kind the Decoder reads, and some
// it leaves to encoding/json.
type decodeSample struct {
	sample
	Items  []inner        `json:"items"`
	Quiet  string         `json:"quiet,omitempty"`
	Map    map[string]int `json:"map"`
	Addr   netip.Addr     `json:"addr"`
	Quoted int            `json:"quoted,string"`
}

var (
	sampleEncoder = NewEncoder[sample]()
	sampleDecoder = NewDecoder[decodeSample]()
)

// sampleFrom is a sample with every member set from the fuzzer's values.
func sampleFrom(s string, raw []byte, f float64, i, nsec int64, zone, year int, flags uint8) sample {
	at := time.Date(year, 3, 4, 5, 6, 7, 0, time.FixedZone("z", zone)).Add(time.Duration(nsec))
	v := sample{embedded: embedded{ID: i, Name: s}, Flag: flags&1 != 0, Count: int(i), Small: int16(i), Mid: int32(i),
		F: f, Raw: raw, At: at, Plain: inner{Code: s, N: int8(i)}, Untagged: s, Skipped: s, hidden: s}
	if flags&2 != 0 {
		n := int(nsec)
		v.PF, v.PS, v.PT, v.PI = &f, &s, &at, &n
	}
	if flags&4 != 0 {
		v.Inner = &inner{Code: s + "!", N: int8(nsec)}
	}
	return v
}

// FuzzEncoder: what the Encoder writes is what encoding/json writes,
// byte for byte, whenever it takes the value on.
func FuzzEncoder(f *testing.F) {
	f.Add("echo", []byte(`{"msg": "hello"}`), 30.0, int64(1), int64(5), 0, 2026, uint8(0))
	f.Add("e<ch>o&", []byte(`{"msg": "<b>\u2028"}`), 0.5, int64(-7), int64(123456789), 3600, 2026, uint8(7))
	f.Add("é\"\\\n", []byte(`[1, 2.50, true, null]`), 1e-7, int64(1e9), int64(1), -5*3600-30*60, 9999, uint8(2))
	f.Add("x", []byte(nil), 1e21, int64(math.MinInt64), int64(0), 86400, 10000, uint8(2))
	f.Add("x", []byte(`{"a":`), math.Copysign(0, -1), int64(math.MaxInt32+1), int64(0), -86399, -1, uint8(7))
	f.Add("x", []byte(``), 123456789.125, int64(-129), int64(0), 0, 0, uint8(6))
	f.Fuzz(func(t *testing.T, s string, raw []byte, fl float64, i, nsec int64, zone, year int, flags uint8) {
		v := sampleFrom(s, raw, fl, i, nsec, zone, year, flags)
		want, wantErr := Marshal(v)
		got, ok := sampleEncoder.Append([]byte("x"), &v)
		if !ok {
			return // left to encoding/json
		}
		if wantErr != nil {
			t.Fatalf("wrote %s, which encoding/json refuses: %v", got, wantErr)
		}
		if "x"+string(want) != string(got) {
			t.Fatalf("wrote\n%s\nencoding/json writes\nx%s", got, want)
		}
	})
}

// decodeStrict decodes doc as the API's strict decoding does: unknown
// members and trailing data refused.
func decodeStrict(doc []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the object")
	}
	return nil
}

var decodeSeeds = []string{
	`{"id":1,"name":"a","flag":true,"count":-2,"small":300,"mid":70000,"f":1.5e-3,"raw":{"a":[1,{"b":"}"}]},` +
		`"pf":2,"ps":"s","pi":3,"inner":{"code":"c","n":-128},"plain":{"n":127},"Untagged":"u","items":[{"code":"x"},{}],"quiet":"q"}`,
	` { "items" : [ ] , "flag" : false } `, `{}`, `{"items":[{"n":1} , {"code":"y"}]}`,
	`{"small":32768}`, `{"n":1}`, `{"count":1.0}`, `{"count":1e2}`, `{"count":01}`, `{"count":-0}`, `{"f":-0}`, `{"f":1e400}`,
	`{"name":"a\"b"}`, `{"name":"é"}`, `{"NAME":"x"}`, `{"name":"a","name":"b"}`, `{"items":[{}],"items":[{}]}`,
	`{"raw":null}`, `{"raw":[1]}`, `{"raw":{"a":}}`, `{"ps":null}`, `{"pt":"2026-01-01T00:00:00Z"}`, `{"inner":null}`,
	`{"items":null}`, `{"items":[null]}`, `{"items":[{}]]}`, `{"items":[{},]}`, `{"items":[{} {}]}`, `{"items":[{"code":1}]}`,
	`{"quoted":"1"}`, `{"map":{}}`, `{"addr":"::1"}`, `{"Skipped":"x"}`, `{"hidden":"x"}`, `{"flag":tru}`, `{"flag":truex}`,
	`{"name":"a"} x`, `{"name":"a",}`, `{"name" "a"}`, `[]`, `null`, ``,
}

// FuzzDecoder: what the Decoder takes, encoding/json decodes to the same
// value; and the Decoder leaves its value as it was when it does not
// take the document.
func FuzzDecoder(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got := decodeSample{Quiet: "as it was"}
		if !sampleDecoder.Decode(doc, &got) {
			if got.Quiet != "as it was" || got.Name != "" {
				t.Fatalf("not taken, but changed: %+v", got)
			}
			return
		}
		var want decodeSample
		if err := decodeStrict(doc, &want); err != nil {
			t.Fatalf("took %q, which encoding/json refuses: %v", doc, err)
		}
		gotJSON, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		wantJSON, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotJSON, wantJSON) || (got.Items == nil) != (want.Items == nil) {
			t.Fatalf("read %q as\n%s\nencoding/json reads\n%s", doc, gotJSON, wantJSON)
		}
	})
}

// The Decoder takes the plain documents, which are most: this is what
// makes it worth having.
func TestDecoderTakesPlainDocuments(t *testing.T) {
	t.Parallel()
	for _, s := range []string{decodeSeeds[0], decodeSeeds[1], decodeSeeds[2], decodeSeeds[3], `{"count":-0}`} {
		var v decodeSample
		if !sampleDecoder.Decode([]byte(s), &v) {
			t.Errorf("did not take %s", s)
		}
	}
	var v decodeSample
	sampleDecoder.Decode([]byte(decodeSeeds[0]), &v)
	if len(v.Items) != 2 || *v.PI != 3 || v.Inner.N != -128 || string(v.Raw) != `{"a":[1,{"b":"}"}]}` {
		t.Errorf("decoded %+v", v)
	}
}

// NewEncoder refuses to be built for a type it would not write as
// encoding/json does.
func TestNewEncoderRefuses(t *testing.T) {
	t.Parallel()
	refused := func(name string, build func()) {
		t.Helper()
		defer func() {
			if r := recover(); r == nil || !strings.HasPrefix(r.(string), "wire: ") {
				t.Errorf("%s: built, or panicked with %v", name, r)
			}
		}()
		build()
	}
	refused("omitempty", func() {
		NewEncoder[struct {
			A string `json:"a,omitempty"`
		}]()
	})
	refused("map", func() { NewEncoder[struct{ M map[string]int }]() })
	refused("slice", func() { NewEncoder[struct{ S []inner }]() })
	refused("methods", func() { NewEncoder[struct{ A netip.Addr }]() })
	refused("uint", func() { NewEncoder[struct{ U uint }]() })
	refused("not a struct", func() { NewEncoder[string]() })
	refused("two of a name", func() {
		NewEncoder[struct {
			embedded
			N string `json:"name"`
		}]()
	})
}

func BenchmarkEncoder(b *testing.B) {
	v := sampleFrom("echo", []byte(`{"msg": "hello"}`), 30, 1, 5, 0, 2026, 6)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = sampleEncoder.Append(buf[:0], &v)
	}
}

func BenchmarkDecoder(b *testing.B) {
	doc := []byte(`{"name":"echo","raw":{"msg":"hello"}}`)
	b.ReportAllocs()
	for b.Loop() {
		var v decodeSample
		sampleDecoder.Decode(doc, &v)
	}
}
