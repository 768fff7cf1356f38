// The parley.v1 wire types, generated from proto/schemas by `npm run generate`,
// and small helpers around them.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { EnvelopeSchema, type Envelope } from "./gen/parley/v1/envelope_pb.js";

export * from "./gen/parley/v1/conversation_pb.js";
export * from "./gen/parley/v1/envelope_pb.js";
export * from "./gen/parley/v1/error_pb.js";
export * from "./gen/parley/v1/event_pb.js";
export * from "./gen/parley/v1/message_pb.js";
export * from "./gen/parley/v1/presence_pb.js";
export * from "./gen/parley/v1/receipt_pb.js";
export * from "./gen/parley/v1/request_pb.js";
export * from "./gen/parley/v1/response_pb.js";
export * from "./gen/parley/v1/typing_pb.js";
export { create };

/** Encodes an envelope for a chat topic. */
export function encodeEnvelope(kind: Envelope["kind"]): Uint8Array {
  return toBinary(EnvelopeSchema, create(EnvelopeSchema, { kind }));
}

/** Decodes a chat topic's payload. */
export function decodeEnvelope(payload: Uint8Array): Envelope {
  return fromBinary(EnvelopeSchema, payload);
}
