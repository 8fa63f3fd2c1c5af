// Package engine is Ferry's domain: channels and the inbound flow (parse → check → commit → ACK),
// group commit, and — as they land — the order lifecycle, study linking, report lifecycle and the
// outbox. It depends on small interfaces (MessageStore here; Sender later), never on a concrete
// adapter: adapters/postgres and adapters/sqlite implement the store, adapters/mllp feeds Receive.
package engine
