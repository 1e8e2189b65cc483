# fstore image: the API (default entrypoint) and the dispatcher, static binaries on a distroless base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fstore-api ./cmd/api \
 && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/fstore-dispatcher ./cmd/dispatcher

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fstore-api /out/fstore-dispatcher /usr/local/bin/
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/fstore-api"]
