# Ferry: one static binary on a small base image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry ./cmd/ferry

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /usr/local/bin/ferry
WORKDIR /var/lib/ferry
# MLLP, HTTP (FHIR, admin API, web), DICOM
EXPOSE 2575 8080 11112
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["serve"]
