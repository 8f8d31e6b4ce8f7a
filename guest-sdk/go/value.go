package wasmig

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	types "wasmig/internal/wit/imports/wasmig_migration_types"
	witTypes "wasmig/internal/wit/types"
)

// Values of SQL types Go has no type for, as arguments, in the text formats of the WIT
// (wit/migration.wit): wasmig.Numeric("12.50"), wasmig.JSON(`{"a":1}`)... Scan reads
// them into these types too, or into a string.
type (
	// Numeric is an exact decimal in plain notation: "-12.3400".
	Numeric string
	// JSON is a json document as text.
	JSON string
	// JSONB is a jsonb document as text.
	JSONB string
	// UUID is a UUID in canonical form: "67e55044-10b1-426f-9247-bb680e5fe0c8".
	UUID string
	// Date is a date, YYYY-MM-DD.
	Date string
	// Time is a time of day without zone, HH:MM:SS[.ffffff].
	Time string
	// Timestamp is a timestamp without zone, YYYY-MM-DDTHH:MM:SS[.ffffff]. (A time.Time
	// argument binds as timestamptz.)
	Timestamp string
)

// Scanner is database/sql's Scanner: a Scan destination implementing it gets the value as
// nil, int64, float64, bool, []byte, string or time.Time (timestamptz), so sql.NullString
// and friends work.
type Scanner interface {
	Scan(src any) error
}

func values(args []any) ([]types.Value, error) {
	out := make([]types.Value, len(args))
	for i, a := range args {
		v, err := toValue(a)
		if err != nil {
			return nil, fmt.Errorf("wasmig: argument %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

func valueRows(rows [][]any) ([][]types.Value, error) {
	out := make([][]types.Value, len(rows))
	for i, row := range rows {
		v, err := values(row)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i+1, err)
		}
		out[i] = v
	}
	return out, nil
}

const rfc3339Micro = "2006-01-02T15:04:05.999999Z07:00"

// toValue maps a Go argument onto an SQL value: nil and nil pointers are NULL; bool;
// int16 and int8 smallint; int32 integer; int, int64 and the unsigned types bigint
// (refused beyond it); float32 real; float64 double precision; string text; []byte bytea;
// time.Time timestamptz; the named string types their SQL type; slices of those arrays.
func toValue(a any) (types.Value, error) {
	switch v := a.(type) {
	case nil:
		return types.MakeValueNull(), nil
	case bool:
		return types.MakeValueBool(v), nil
	case int8:
		return types.MakeValueInt16(int16(v)), nil
	case int16:
		return types.MakeValueInt16(v), nil
	case int32:
		return types.MakeValueInt32(v), nil
	case int:
		return types.MakeValueInt64(int64(v)), nil
	case int64:
		return types.MakeValueInt64(v), nil
	case uint8:
		return types.MakeValueInt16(int16(v)), nil
	case uint16:
		return types.MakeValueInt32(int32(v)), nil
	case uint32:
		return types.MakeValueInt64(int64(v)), nil
	case uint:
		return unsigned(uint64(v))
	case uint64:
		return unsigned(v)
	case float32:
		return types.MakeValueFloat32(v), nil
	case float64:
		return types.MakeValueFloat64(v), nil
	case string:
		return types.MakeValueText(v), nil
	case []byte:
		if v == nil {
			return types.MakeValueNull(), nil
		}
		return types.MakeValueBytes(v), nil
	case time.Time:
		return types.MakeValueTimestamptz(v.UTC().Format(rfc3339Micro)), nil
	case Numeric:
		return types.MakeValueNumeric(string(v)), nil
	case JSON:
		return types.MakeValueJson(string(v)), nil
	case JSONB:
		return types.MakeValueJsonb(string(v)), nil
	case UUID:
		return types.MakeValueUuid(string(v)), nil
	case Date:
		return types.MakeValueDate(string(v)), nil
	case Time:
		return types.MakeValueTime(string(v)), nil
	case Timestamp:
		return types.MakeValueTimestamp(string(v)), nil
	case *bool:
		return deref(v)
	case *int16:
		return deref(v)
	case *int32:
		return deref(v)
	case *int:
		return deref(v)
	case *int64:
		return deref(v)
	case *float32:
		return deref(v)
	case *float64:
		return deref(v)
	case *string:
		return deref(v)
	case *time.Time:
		return deref(v)
	case *Numeric:
		return deref(v)
	case *JSON:
		return deref(v)
	case *UUID:
		return deref(v)
	case *Date:
		return deref(v)
	case *Timestamp:
		return deref(v)
	case []bool:
		return array(types.MakeArrayValueBool, v, func(e bool) bool { return e }), nil
	case []int16:
		return array(types.MakeArrayValueInt16, v, func(e int16) int16 { return e }), nil
	case []int32:
		return array(types.MakeArrayValueInt32, v, func(e int32) int32 { return e }), nil
	case []int64:
		return array(types.MakeArrayValueInt64, v, func(e int64) int64 { return e }), nil
	case []int:
		return array(types.MakeArrayValueInt64, v, func(e int) int64 { return int64(e) }), nil
	case []float32:
		return array(types.MakeArrayValueFloat32, v, func(e float32) float32 { return e }), nil
	case []float64:
		return array(types.MakeArrayValueFloat64, v, func(e float64) float64 { return e }), nil
	case []string:
		return array(types.MakeArrayValueText, v, func(e string) string { return e }), nil
	case [][]byte:
		return array(types.MakeArrayValueBytes, v, func(e []byte) []byte { return e }), nil
	case []UUID:
		return array(types.MakeArrayValueUuid, v, func(e UUID) string { return string(e) }), nil
	case []Numeric:
		return array(types.MakeArrayValueNumeric, v, func(e Numeric) string { return string(e) }), nil
	case []*string:
		return nullableArray(types.MakeArrayValueText, v), nil
	case []*int64:
		return nullableArray(types.MakeArrayValueInt64, v), nil
	case []*int32:
		return nullableArray(types.MakeArrayValueInt32, v), nil
	case []*bool:
		return nullableArray(types.MakeArrayValueBool, v), nil
	case []*float64:
		return nullableArray(types.MakeArrayValueFloat64, v), nil
	}
	return types.Value{}, fmt.Errorf("cannot pass %T as an SQL value", a)
}

func unsigned(v uint64) (types.Value, error) {
	if v > math.MaxInt64 {
		return types.Value{}, fmt.Errorf("%d does not fit a bigint", v)
	}
	return types.MakeValueInt64(int64(v)), nil
}

func deref[T any](p *T) (types.Value, error) {
	if p == nil {
		return types.MakeValueNull(), nil
	}
	return toValue(*p)
}

func array[E, W any](build func([]witTypes.Option[W]) types.ArrayValue, elements []E, conv func(E) W) types.Value {
	out := make([]witTypes.Option[W], len(elements))
	for i, e := range elements {
		out[i] = witTypes.Some(conv(e))
	}
	return types.MakeValueArray(build(out))
}

func nullableArray[W any](build func([]witTypes.Option[W]) types.ArrayValue, elements []*W) types.Value {
	out := make([]witTypes.Option[W], len(elements))
	for i, e := range elements {
		if e == nil {
			out[i] = witTypes.None[W]()
		} else {
			out[i] = witTypes.Some(*e)
		}
	}
	return types.MakeValueArray(build(out))
}

// text is the payload of a value sent as text (text, numeric, json, uuid, dates, times).
func text(v types.Value) (string, bool) {
	switch v.Tag() {
	case types.Value_Text:
		return v.Text(), true
	case types.Value_Numeric:
		return v.Numeric(), true
	case types.Value_Json:
		return v.Json(), true
	case types.Value_Jsonb:
		return v.Jsonb(), true
	case types.Value_Uuid:
		return v.Uuid(), true
	case types.Value_Date:
		return v.Date(), true
	case types.Value_Time:
		return v.Time(), true
	case types.Value_Timestamp:
		return v.Timestamp(), true
	case types.Value_Timestamptz:
		return v.Timestamptz(), true
	}
	return "", false
}

// goValue is an SQL value as a Go value: nil for NULL; bool; int16, int32, int64;
// float32, float64; []byte; string for text and json; Numeric, UUID, Date, Time,
// Timestamp for those types; time.Time for timestamptz; a slice for an array ([]any,
// nil elements for NULL).
func goValue(v types.Value) any {
	switch v.Tag() {
	case types.Value_Null:
		return nil
	case types.Value_Bool:
		return v.Bool()
	case types.Value_Int16:
		return v.Int16()
	case types.Value_Int32:
		return v.Int32()
	case types.Value_Int64:
		return v.Int64()
	case types.Value_Float32:
		return v.Float32()
	case types.Value_Float64:
		return v.Float64()
	case types.Value_Text, types.Value_Json, types.Value_Jsonb:
		s, _ := text(v)
		return s
	case types.Value_Numeric:
		return Numeric(v.Numeric())
	case types.Value_Uuid:
		return UUID(v.Uuid())
	case types.Value_Date:
		return Date(v.Date())
	case types.Value_Time:
		return Time(v.Time())
	case types.Value_Timestamp:
		return Timestamp(v.Timestamp())
	case types.Value_Timestamptz:
		if t, err := parseTime(v.Timestamptz()); err == nil {
			return t
		}
		return v.Timestamptz()
	case types.Value_Bytes:
		return v.Bytes()
	case types.Value_Array:
		return arrayElements(v.Array())
	}
	return nil
}

func elements[T any](list []witTypes.Option[T]) []any {
	out := make([]any, len(list))
	for i, e := range list {
		if e.IsSome() {
			out[i] = e.Some()
		}
	}
	return out
}

func arrayElements(a types.ArrayValue) []any {
	switch a.Tag() {
	case types.ArrayValue_Bool:
		return elements(a.Bool())
	case types.ArrayValue_Int16:
		return elements(a.Int16())
	case types.ArrayValue_Int32:
		return elements(a.Int32())
	case types.ArrayValue_Int64:
		return elements(a.Int64())
	case types.ArrayValue_Float32:
		return elements(a.Float32())
	case types.ArrayValue_Float64:
		return elements(a.Float64())
	case types.ArrayValue_Bytes:
		return elements(a.Bytes())
	case types.ArrayValue_Numeric:
		return elements(a.Numeric())
	case types.ArrayValue_Text:
		return elements(a.Text())
	case types.ArrayValue_Json:
		return elements(a.Json())
	case types.ArrayValue_Jsonb:
		return elements(a.Jsonb())
	case types.ArrayValue_Uuid:
		return elements(a.Uuid())
	case types.ArrayValue_Date:
		return elements(a.Date())
	case types.ArrayValue_Time:
		return elements(a.Time())
	case types.ArrayValue_Timestamp:
		return elements(a.Timestamp())
	case types.ArrayValue_Timestamptz:
		return elements(a.Timestamptz())
	}
	return nil
}

// driverValue is v as database/sql's driver would give it to a Scanner: nil, int64, float64,
// bool, []byte, string or time.Time.
func driverValue(v types.Value) any {
	switch g := goValue(v).(type) {
	case int16:
		return int64(g)
	case int32:
		return int64(g)
	case float32:
		return float64(g)
	case Numeric:
		return string(g)
	case UUID:
		return string(g)
	case Date:
		return string(g)
	case Time:
		return string(g)
	case Timestamp:
		return string(g)
	case []any:
		return fmt.Sprint(g)
	default:
		return g
	}
}

// parseTime reads the WIT's temporal formats (and what SQLite stores: a space for the T).
func parseTime(s string) (time.Time, error) {
	layouts := []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02",
		"15:04:05.999999999",
	}
	for _, layout := range layouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date or time wasmig knows", s)
}

func integer(v types.Value) (int64, error) {
	switch v.Tag() {
	case types.Value_Int16:
		return int64(v.Int16()), nil
	case types.Value_Int32:
		return int64(v.Int32()), nil
	case types.Value_Int64:
		return v.Int64(), nil
	case types.Value_Bool:
		if v.Bool() {
			return 1, nil
		}
		return 0, nil
	}
	if s, ok := text(v); ok {
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	}
	return 0, fmt.Errorf("cannot read %s as an integer", tagName(v))
}

func float(v types.Value) (float64, error) {
	switch v.Tag() {
	case types.Value_Float32:
		return float64(v.Float32()), nil
	case types.Value_Float64:
		return v.Float64(), nil
	case types.Value_Int16, types.Value_Int32, types.Value_Int64:
		n, _ := integer(v)
		return float64(n), nil
	}
	if s, ok := text(v); ok {
		return strconv.ParseFloat(strings.TrimSpace(s), 64)
	}
	return 0, fmt.Errorf("cannot read %s as a float", tagName(v))
}

func fits(n int64, bits int) error {
	min, max := int64(-1)<<(bits-1), int64(1)<<(bits-1)-1
	if n < min || n > max {
		return fmt.Errorf("%d does not fit an int%d", n, bits)
	}
	return nil
}

func tagName(v types.Value) string {
	names := []string{"NULL", "bool", "int16", "int32", "int64", "float32", "float64", "numeric", "text", "bytes", "json", "jsonb", "uuid", "date", "time", "timestamp", "timestamptz", "array"}
	if int(v.Tag()) < len(names) {
		return names[v.Tag()]
	}
	return "an unknown value"
}

// scanString is the text of v for a string destination: text-format values as they are,
// numbers and booleans formatted.
func scanString(v types.Value) (string, error) {
	if s, ok := text(v); ok {
		return s, nil
	}
	switch v.Tag() {
	case types.Value_Bytes:
		return string(v.Bytes()), nil
	case types.Value_Bool, types.Value_Int16, types.Value_Int32, types.Value_Int64, types.Value_Float32, types.Value_Float64:
		return fmt.Sprint(goValue(v)), nil
	}
	return "", fmt.Errorf("cannot read %s as a string", tagName(v))
}

// scan stores v into dest (see Rows.Scan).
func scan(dest any, v types.Value) error {
	null := v.Tag() == types.Value_Null
	if s, ok := dest.(Scanner); ok {
		return s.Scan(driverValue(v))
	}
	switch d := dest.(type) {
	case *any:
		*d = goValue(v)
		return nil
	case *[]byte:
		if null {
			*d = nil
			return nil
		}
		if v.Tag() == types.Value_Bytes {
			*d = append([]byte(nil), v.Bytes()...)
			return nil
		}
		s, err := scanString(v)
		*d = []byte(s)
		return err
	case *[]any:
		if null {
			*d = nil
			return nil
		}
		if v.Tag() != types.Value_Array {
			return fmt.Errorf("cannot read %s as an array", tagName(v))
		}
		*d = arrayElements(v.Array())
		return nil
	case **string:
		return scanPointer(d, v)
	case **int64:
		return scanPointer(d, v)
	case **int:
		return scanPointer(d, v)
	case **int32:
		return scanPointer(d, v)
	case **int16:
		return scanPointer(d, v)
	case **float64:
		return scanPointer(d, v)
	case **float32:
		return scanPointer(d, v)
	case **bool:
		return scanPointer(d, v)
	case **time.Time:
		return scanPointer(d, v)
	case **Numeric:
		return scanPointer(d, v)
	case **UUID:
		return scanPointer(d, v)
	case **JSON:
		return scanPointer(d, v)
	case **Date:
		return scanPointer(d, v)
	case **Timestamp:
		return scanPointer(d, v)
	}
	if null {
		return fmt.Errorf("NULL into %T: scan into a pointer to a pointer (**T) or *any for a column that may be NULL", dest)
	}
	switch d := dest.(type) {
	case *string:
		s, err := scanString(v)
		*d = s
		return err
	case *Numeric:
		s, err := scanString(v)
		*d = Numeric(s)
		return err
	case *JSON:
		s, err := scanString(v)
		*d = JSON(s)
		return err
	case *JSONB:
		s, err := scanString(v)
		*d = JSONB(s)
		return err
	case *UUID:
		s, err := scanString(v)
		*d = UUID(s)
		return err
	case *Date:
		s, err := scanString(v)
		*d = Date(s)
		return err
	case *Time:
		s, err := scanString(v)
		*d = Time(s)
		return err
	case *Timestamp:
		s, err := scanString(v)
		*d = Timestamp(s)
		return err
	case *int64:
		n, err := integer(v)
		*d = n
		return err
	case *int:
		n, err := integer(v)
		*d = int(n)
		return err
	case *int32:
		n, err := integer(v)
		if err == nil {
			err = fits(n, 32)
		}
		*d = int32(n)
		return err
	case *int16:
		n, err := integer(v)
		if err == nil {
			err = fits(n, 16)
		}
		*d = int16(n)
		return err
	case *uint64:
		n, err := integer(v)
		if err == nil && n < 0 {
			err = fmt.Errorf("%d is negative", n)
		}
		*d = uint64(n)
		return err
	case *float64:
		f, err := float(v)
		*d = f
		return err
	case *float32:
		f, err := float(v)
		*d = float32(f)
		return err
	case *bool:
		if v.Tag() == types.Value_Bool {
			*d = v.Bool()
			return nil
		}
		n, err := integer(v)
		*d = n != 0
		return err
	case *time.Time:
		s, ok := text(v)
		if !ok {
			return fmt.Errorf("cannot read %s as a time", tagName(v))
		}
		t, err := parseTime(s)
		*d = t
		return err
	case *[]int64:
		return scanArray(d, v)
	case *[]int32:
		return scanArray(d, v)
	case *[]int16:
		return scanArray(d, v)
	case *[]string:
		return scanArray(d, v)
	case *[]bool:
		return scanArray(d, v)
	case *[]float64:
		return scanArray(d, v)
	case *[]float32:
		return scanArray(d, v)
	}
	return fmt.Errorf("cannot scan into %T", dest)
}

// scanPointer scans into **T: nil for NULL, else a new T.
func scanPointer[T any](d **T, v types.Value) error {
	if v.Tag() == types.Value_Null {
		*d = nil
		return nil
	}
	value := new(T)
	if err := scan(value, v); err != nil {
		return err
	}
	*d = value
	return nil
}

// scanArray reads an array whose elements are all T and none NULL (else *[]any).
func scanArray[T any](d *[]T, v types.Value) error {
	if v.Tag() != types.Value_Array {
		return fmt.Errorf("cannot read %s as an array", tagName(v))
	}
	all := arrayElements(v.Array())
	out := make([]T, len(all))
	for i, e := range all {
		t, ok := e.(T)
		if !ok {
			return fmt.Errorf("element %d is %T, not %T (scan into *[]any for NULL elements)", i+1, e, t)
		}
		out[i] = t
	}
	*d = out
	return nil
}
