// A non-preemptive Apache HttpClient 4.5 GET, the way provisioning connectors use it: the
// credentials sit in a BasicCredentialsProvider and are sent only in answer to a challenge.
//
// Usage: java ChallengeClient URL USERNAME PASSWORD
// Prints one line: "status=NNN sent=SCHEME[,SCHEME...]" (or "sent=none"), naming the
// Authorization schemes HttpClient sent, never the credentials. Exit 0 whatever the status.

import java.util.ArrayList;
import java.util.List;

import org.apache.http.Header;
import org.apache.http.HttpClientConnection;
import org.apache.http.HttpException;
import org.apache.http.HttpRequest;
import org.apache.http.HttpResponse;
import org.apache.http.auth.AuthScope;
import org.apache.http.auth.UsernamePasswordCredentials;
import org.apache.http.client.config.RequestConfig;
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpGet;
import org.apache.http.impl.client.BasicCredentialsProvider;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.protocol.HttpContext;
import org.apache.http.protocol.HttpRequestExecutor;
import org.apache.http.util.EntityUtils;

public final class ChallengeClient {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: ChallengeClient URL USERNAME PASSWORD");
            System.exit(2);
        }
        BasicCredentialsProvider credentials = new BasicCredentialsProvider();
        credentials.setCredentials(AuthScope.ANY, new UsernamePasswordCredentials(args[1], args[2]));
        RequestConfig timeouts = RequestConfig.custom()
                .setConnectTimeout(20000)
                .setSocketTimeout(20000)
                .setConnectionRequestTimeout(20000)
                .build();

        // Authorization is added after the request interceptors run, so the executor is the
        // first place that sees what really goes on the wire.
        final List<String> sent = new ArrayList<>();
        HttpRequestExecutor recording = new HttpRequestExecutor() {
            @Override
            public HttpResponse execute(HttpRequest request, HttpClientConnection conn, HttpContext context)
                    throws java.io.IOException, HttpException {
                Header authorization = request.getFirstHeader("Authorization");
                if (authorization != null) {
                    sent.add(authorization.getValue().trim().split("\\s+", 2)[0]);
                }
                return super.execute(request, conn, context);
            }
        };

        try (CloseableHttpClient client = HttpClients.custom()
                .setDefaultCredentialsProvider(credentials)
                .setDefaultRequestConfig(timeouts)
                .setRequestExecutor(recording)
                .build();
             CloseableHttpResponse response = client.execute(new HttpGet(args[0]))) {
            EntityUtils.consume(response.getEntity());
            String schemes = sent.isEmpty() ? "none" : String.join(",", sent);
            System.out.println("status=" + response.getStatusLine().getStatusCode() + " sent=" + schemes);
        }
    }
}
