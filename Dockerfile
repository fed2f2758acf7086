# nativegpt2 serve in a container, built from the published tool package.
#   docker build -t nativegpt2-serve .
#   docker run -p 8080:8080 nativegpt2-serve                                  # the bundled model
#   docker run -p 8080:8080 -v /models/gpt2:/model:ro nativegpt2-serve --model /model
# One container serves one model on one machine; scale out with replicas behind your load balancer.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet pack src/NativeGpt2.Cli -c Release -o /feed \
 && dotnet tool install NativeGpt2.Cli --tool-path /tool --add-source /feed

FROM mcr.microsoft.com/dotnet/aspnet:10.0
COPY --from=build /tool /tool
ENV DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
# Hub models download to /home/app/.cache/huggingface: mount a volume there to keep them.
USER app
EXPOSE 8080
# Point the load balancer's health probe at GET /health: it answers {"status":"ok"} once the model is loaded.
# Set NATIVEGPT2_API_KEY (docker run -e) to answer only requests that send it as 'Authorization: Bearer KEY'.
ENTRYPOINT ["/tool/nativegpt2", "serve", "--urls", "http://0.0.0.0:8080"]
